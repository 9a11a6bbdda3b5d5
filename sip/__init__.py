"""The SIP side of carebridge: dial-out legs through pjsua2 worker processes.

- :mod:`sip.pool`: :class:`~sip.pool.SipService`, the main-process API (Twisted);
- :mod:`sip.worker`: ``python -m sip.worker``, one pjsua2 endpoint, <= 4 calls;
- :mod:`sip.protocol`: sans-IO framing of control messages and PCM on the pipes;
- :mod:`sip.config`, :mod:`sip.events`, :mod:`sip.uri`, :mod:`sip.sdp`: small
  pure helpers shared by both sides.

Importing this package imports nothing heavy: the worker must not load
Twisted, and the main process must not load pjsua2.
"""
