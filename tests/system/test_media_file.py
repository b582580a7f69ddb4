"""A call whose video is read from a media file: the SDK sends whatever track it is given.

The file is written here with PyAV (VP8 in WebM) from synthetic-camera pictures
carrying a known tag, played by aiortc's MediaPlayer into a DuetClient, and
decoded by its partner through the real system (PostgreSQL, routing,
matchmaker, three edge processes): the partner's frames must carry the file's
tag. The file's side uses the default first-frame rule, which never looks at
the picture.
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest
import pytest_asyncio
from aiortc.contrib.media import MediaPlayer

from duet.services.client import DuetClient
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import MarkerRule, SyntheticCamera, read_marker, synthetic_client
from tests.services.client.reading_rule import ReadingRule

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

FILE_TAG = 0x4D46
FPS = 30
FILE_FRAMES = 60  # two seconds, played in a loop


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster-media-file")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


def write_tagged_video(path: Path, tag: int) -> None:
    """VP8 in WebM: FILE_FRAMES synthetic-camera pictures carrying ``tag``, counters 0, 1, ..."""
    camera = SyntheticCamera(tag)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = camera.width, camera.height, "yuv420p"
        stream.bit_rate = 1_000_000  # the marker must survive this encoding and the leg's
        for counter in range(FILE_FRAMES):
            frame = camera.make_frame(counter)
            frame.pts, frame.time_base = counter, fractions.Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


async def test_a_track_played_from_a_file_reaches_the_partner(cluster: ClusterInfo, tmp_path: Path) -> None:
    path = tmp_path / "tagged.webm"
    write_tagged_video(path, FILE_TAG)
    # The file itself reads back as written.
    with av.open(str(path)) as container:
        decoded = [read_marker(frame) for frame in container.decode(video=0)]
    assert [(m.tag, m.counter) for m in decoded if m] == [(FILE_TAG, i) for i in range(FILE_FRAMES)]

    player = MediaPlayer(str(path), loop=True)
    assert player.audio is None  # no audio in the file: the leg only receives audio
    rule = ReadingRule()
    sender = DuetClient(
        cluster.matchmaker,
        "file-ana",
        "Ana (file)",
        video=player.video,
        first_frame_rule=rule,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_token("file-ana"),
    )
    receiver = synthetic_client(
        cluster.matchmaker,
        "file-ben",
        "Ben",
        tag=2001,
        client_ip=DEMO_CLIENT_IPS["Virginia"],
        token=cluster.user_tokens("file-ben"),
    )
    watcher = receiver.first_frame_rule
    assert isinstance(watcher, MarkerRule)
    others = {
        tag: synthetic_client(
            cluster.matchmaker,
            f"file-{name}",
            name,
            tag=tag,
            client_ip=DEMO_CLIENT_IPS[region],
            token=cluster.user_tokens(f"file-{name}"),
        )
        for name, tag, region in (("chen", 2002, "Singapore"), ("dara", 2003, "Frankfurt"))
    }
    try:
        await asyncio.gather(sender.connect(), receiver.connect(), *(c.connect() for c in others.values()))
        sent, received = await asyncio.gather(sender.find_partner(), receiver.find_partner())
        assert sent.call_id == received.call_id

        # The partner decoded the file's picture, frame after frame.
        assert received.first_marker is not None and received.first_marker.tag == FILE_TAG
        await asyncio.sleep(1.0)
        assert watcher.partner_tag == FILE_TAG and watcher.partner_frames >= FPS // 2
        assert watcher.last_marker is not None and watcher.last_marker.tag == FILE_TAG
        assert watcher.last_marker.counter < FILE_FRAMES  # a picture from the file, as written
        # The file's side needs no marker to find its partner (a fresh leg: its first frame).
        assert sent.connect_ms is not None and sent.first_marker is not None
        assert sent.first_marker.tag == 2001

        # "next" on the file's warm leg: the default rule skips the previous
        # partner's frames and finds each new partner's picture.
        for tag, other in others.items():
            waiting = asyncio.create_task(other.find_partner())
            try:
                await asyncio.sleep(0.3)  # in the pool first, so the switch is as fast as it gets
                result = await sender.next()
                await waiting
            finally:
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
            assert result.first_marker is not None
            assert result.first_marker.tag == tag
    finally:
        await asyncio.gather(sender.leave(), receiver.leave(), *(c.leave() for c in others.values()))
    assert player.video is not None and player.video.readyState == "ended"  # leave() stopped the file's track
