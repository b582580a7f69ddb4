"""The edge node: WebRTC legs terminated with aiortc, RTP forwarded between edges without decoding."""
