from sip.sdp import audio_crypto_suite, sdp_from_message

# captured from Debian baresip 1.0.0 answering with mediaenc=srtp-mand
ANSWER_FROM_BARESIP = (
    "v=0\r\n"
    "o=- 1 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 10002 RTP/SAVP 9 101\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=sendrecv\r\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj\r\n"
    "m=video 0 RTP/SAVP 96\r\n"
)


def test_suite_of_audio_stream() -> None:
    assert audio_crypto_suite(ANSWER_FROM_BARESIP) == "AES_CM_128_HMAC_SHA1_80"


def test_no_crypto_means_none() -> None:
    plain = ANSWER_FROM_BARESIP.replace("RTP/SAVP", "RTP/AVP").split("a=crypto")[0]
    assert audio_crypto_suite(plain) is None


def test_rejected_audio_stream_has_no_suite() -> None:
    sdp = "v=0\r\nm=audio 0 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_32 x\r\n"
    assert audio_crypto_suite(sdp) is None


def test_body_of_sip_message() -> None:
    message = "SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nv=0\r\n"
    assert sdp_from_message(message) == "v=0\r\n"
    assert sdp_from_message("SIP/2.0 200 OK\r\n") == ""
