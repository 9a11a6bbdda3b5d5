// carebridge join page: signalling over a WebSocket, one RTCPeerConnection
// to the bridge, audio and video both ways. No external assets.
//
// window.carebridge exposes the state for people debugging and for the test
// harness: state, legId, error, readAudio(seconds), stats().
"use strict";

(() => {
  const CAPTURE_SECONDS = 10;
  const GATHER_TIMEOUT_MS = 3000;

  const $ = (id) => document.getElementById(id);
  const form = $("join-form");
  const call = $("call");
  const statusLine = $("status");
  const remoteVideo = $("remote");
  const selfVideo = $("self");
  const muteButton = $("mute");
  const cameraButton = $("camera");
  const leaveButton = $("leave");

  const match = location.pathname.match(/^\/rooms\/([^/]+)/);
  const room = match ? decodeURIComponent(match[1]) : "";
  $("room-name").textContent = room;

  const api = {
    state: "idle",     // idle, joining, connecting, connected, left, error
    room,
    legId: null,
    error: null,
    leftReason: null,
    messages: [],      // every message from the bridge, in order
    capture: null,     // {rate, samples (Float32Array ring), written}
    readAudio,
    stats,
  };
  window.carebridge = api;

  let socket = null;
  let pc = null;
  let localStream = null;
  let audioContext = null;

  function setStatus(text, kind = "info") {
    statusLine.textContent = text;
    statusLine.dataset.kind = kind;
  }

  function setState(state) {
    api.state = state;
    document.body.dataset.state = state;
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
    }
  }

  // -- joining --------------------------------------------------------------

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    const password = $("password").value;
    const video = form.elements.media.value === "camera";
    $("join").disabled = true;
    setState("joining");
    setStatus("Starting microphone" + (video ? " and camera" : "") + "…");

    // created inside the click: browsers let audio start only after a gesture
    audioContext = new AudioContext({ sampleRate: 48000 });

    try {
      localStream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: false },
        video: video ? { width: 640, height: 480 } : false,
      });
    } catch (err) {
      fail(`Cannot use the ${video ? "camera or microphone" : "microphone"}: ${err.name}`);
      return;
    }
    if (video) {
      selfVideo.srcObject = localStream;
      selfVideo.dataset.live = "";
    } else {
      cameraButton.hidden = true;
    }

    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(
      `${scheme}//${location.host}/rooms/${encodeURIComponent(room)}/ws`);
    socket.addEventListener("open", () => {
      setStatus("Checking the room password…");
      send({ type: "join", name, password, audio: true, video });
    });
    socket.addEventListener("message", (event) => onMessage(event.data));
    socket.addEventListener("close", (event) => {
      if (api.state !== "left" && api.state !== "error") {
        finish(api.leftReason || `connection to the bridge closed (${event.code})`);
      }
    });
  });

  async function onMessage(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (err) {
      return;
    }
    api.messages.push(message);
    switch (message.type) {
      case "joined":
        api.legId = message.leg;
        await startCall();
        break;
      case "answer":
        await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
        break;
      case "error":
        if (message.fatal) {
          fail(message.message);
        } else {
          console.warn("bridge refused a message:", message.message);
        }
        break;
      case "left":
        api.leftReason = message.reason;
        break;
      default:
        break;
    }
  }

  async function startCall() {
    setState("connecting");
    setStatus("Connecting media…");
    pc = new RTCPeerConnection({ iceServers: [] });
    for (const track of localStream.getTracks()) {
      pc.addTrack(track, localStream);
    }
    if (localStream.getVideoTracks().length === 0) {
      pc.addTransceiver("video", { direction: "recvonly" });
    }
    pc.addEventListener("track", onTrack);
    pc.addEventListener("connectionstatechange", () => {
      const state = pc.connectionState;
      if (state === "connected") {
        setState("connected");
        setStatus("Connected.");
        form.hidden = true;
        call.hidden = false;
      } else if (state === "failed") {
        fail("The media connection failed.");
      }
    });

    // the bridge takes one offer with every candidate in it (no trickle)
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    send({ type: "offer", sdp: pc.localDescription.sdp });
  }

  function gatheringComplete(peer) {
    if (peer.iceGatheringState === "complete") {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
      peer.addEventListener("icegatheringstatechange", () => {
        if (peer.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  function onTrack(event) {
    const stream = remoteVideo.srcObject || new MediaStream();
    stream.addTrack(event.track);
    // Chromium routes remote WebRTC audio into Web Audio only while a media
    // element plays the stream, so the element gets it too
    remoteVideo.srcObject = stream;
    remoteVideo.play().catch(() => {});
    if (event.track.kind === "audio") {
      startCapture(event.track);
    }
  }

  // -- received audio, for the test harness ----------------------------------

  async function startCapture(track) {
    try {
      await audioContext.audioWorklet.addModule("/static/capture-worklet.js");
      const source = audioContext.createMediaStreamSource(new MediaStream([track]));
      const node = new AudioWorkletNode(audioContext, "carebridge-capture");
      const sink = audioContext.createGain();
      sink.gain.value = 0;  // the <video> element plays it; this only listens
      source.connect(node).connect(sink).connect(audioContext.destination);
      const capture = {
        rate: audioContext.sampleRate,
        samples: new Float32Array(audioContext.sampleRate * CAPTURE_SECONDS),
        written: 0,
      };
      node.port.onmessage = (event) => {
        const block = event.data;
        const ring = capture.samples;
        for (let i = 0; i < block.length; i++) {
          ring[(capture.written + i) % ring.length] = block[i];
        }
        capture.written += block.length;
      };
      api.capture = capture;
      await audioContext.resume();
    } catch (err) {
      console.warn("audio capture unavailable:", err);
    }
  }

  // The last `seconds` of received audio as base64 little-endian int16.
  function readAudio(seconds) {
    const capture = api.capture;
    if (!capture) {
      return { rate: 0, pcm: "" };
    }
    const ring = capture.samples;
    const count = Math.min(
      Math.floor(seconds * capture.rate), capture.written, ring.length);
    const out = new Int16Array(count);
    const start = capture.written - count;
    for (let i = 0; i < count; i++) {
      const v = ring[(start + i) % ring.length];
      out[i] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
    }
    let binary = "";
    const bytes = new Uint8Array(out.buffer);
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return { rate: capture.rate, pcm: btoa(binary) };
  }

  async function stats() {
    const result = {
      state: api.state,
      connectionState: pc ? pc.connectionState : null,
      framesDecoded: 0,
      audioSamplesReceived: 0,
      frameWidth: 0,
      frameHeight: 0,
      captured: api.capture ? api.capture.written : 0,
    };
    if (!pc) {
      return result;
    }
    const report = await pc.getStats();
    report.forEach((entry) => {
      if (entry.type === "inbound-rtp" && entry.kind === "video") {
        result.framesDecoded = entry.framesDecoded || 0;
        result.frameWidth = entry.frameWidth || 0;
        result.frameHeight = entry.frameHeight || 0;
      } else if (entry.type === "inbound-rtp" && entry.kind === "audio") {
        result.audioSamplesReceived = entry.totalSamplesReceived || 0;
      }
    });
    return result;
  }

  // -- controls and the end -------------------------------------------------

  muteButton.addEventListener("click", () => {
    const track = localStream && localStream.getAudioTracks()[0];
    if (!track) return;
    track.enabled = !track.enabled;
    muteButton.setAttribute("aria-pressed", String(!track.enabled));
    muteButton.textContent = track.enabled ? "Mute microphone" : "Unmute microphone";
    send({ type: "mute", audio: !track.enabled });
  });

  cameraButton.addEventListener("click", () => {
    const track = localStream && localStream.getVideoTracks()[0];
    if (!track) return;
    track.enabled = !track.enabled;
    cameraButton.setAttribute("aria-pressed", String(!track.enabled));
    cameraButton.textContent = track.enabled ? "Turn camera off" : "Turn camera on";
    send({ type: "mute", video: !track.enabled });
  });

  leaveButton.addEventListener("click", () => {
    send({ type: "leave" });
    finish("You left the room.");
  });

  window.addEventListener("pagehide", () => send({ type: "leave" }));

  function teardown() {
    if (pc) {
      pc.close();
    }
    if (localStream) {
      localStream.getTracks().forEach((track) => track.stop());
    }
    if (socket && socket.readyState <= WebSocket.OPEN) {
      socket.close(1000);
    }
    if (audioContext) {
      audioContext.close().catch(() => {});
    }
    selfVideo.srcObject = null;
    delete selfVideo.dataset.live;
  }

  function finish(text) {
    setState("left");
    teardown();
    call.hidden = true;
    setStatus(text);
  }

  function fail(text) {
    api.error = text;
    setState("error");
    teardown();
    call.hidden = true;
    form.hidden = false;
    $("join").disabled = false;
    setStatus(text, "error");
  }
})();
