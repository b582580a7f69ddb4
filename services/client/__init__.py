"""The Duet client SDK: one user's Session stream to the matchmaker and WebRTC leg to an edge."""
