// Copies the received audio to the page, 128 frames at a time, for the level
// meter and the test harness (window.carebridge.readAudio).
class CaptureProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      this.port.postMessage(input[0].slice(0));
    }
    return true;
  }
}
registerProcessor("carebridge-capture", CaptureProcessor);
