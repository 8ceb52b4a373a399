"""The hand-off's wire format: every message survives encode/decode, arrays cross as their bytes
(read-only views of the received frames, no copy), and a malformed message is refused."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import DeadlineExceeded, Overloaded, ServiceError
from service.handoff.frames import FrameError, pack, unpack
from service.handoff.messages import (
    Cancel,
    Description,
    Failure,
    ModelStatus,
    Ping,
    Pong,
    Result,
    Submit,
    decode,
    encode,
)


def as_received(frames: list) -> list[bytes]:
    """What a peer receives: each frame's bytes."""
    return [bytes(memoryview(frame)) for frame in frames]


def test_a_submit_with_and_without_states_survives_the_wire() -> None:
    rng = np.random.default_rng(0)
    first, second = rng.standard_normal((7, 5), np.float32), rng.standard_normal((3, 5), np.float32)
    states = {"initial_c_0": rng.standard_normal((2, 8), np.float32)}
    sent = Submit(
        41, "tiny_bi", "1", 123.5, ["final_c_0", "probs"], [first, second], [None, states]
    )
    received = decode(as_received(encode(sent)))
    assert isinstance(received, Submit)
    assert (received.id, received.model, received.version) == (41, "tiny_bi", "1")
    assert received.deadline == 123.5 and received.outputs == ["final_c_0", "probs"]
    np.testing.assert_array_equal(received.sequences[0], first)
    np.testing.assert_array_equal(received.sequences[1], second)
    assert received.states[0] is None
    assert received.states[1] is not None
    np.testing.assert_array_equal(received.states[1]["initial_c_0"], states["initial_c_0"])


def test_received_arrays_are_views_of_the_frames_not_copies() -> None:
    sequence = np.arange(12, dtype=np.float32).reshape(4, 3)
    frames = as_received(encode(Result(1, [{"outputs": sequence}])))
    received = decode(frames)
    assert isinstance(received, Result)
    array = received.results[0]["outputs"]
    assert not array.flags.writeable and not array.flags.owndata
    assert np.shares_memory(array, np.frombuffer(frames[1], np.float32))


def test_a_non_contiguous_array_is_sent_as_its_values() -> None:
    states = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    column = states[:, 1]  # (dirs, H) of one row of a batch: not contiguous
    received = decode(as_received(encode(Result(2, [{"final_c_0": column}]))))
    assert isinstance(received, Result)
    np.testing.assert_array_equal(received.results[0]["final_c_0"], column)


def test_a_failure_comes_back_as_its_own_error_class() -> None:
    sent = Failure.of(9, Overloaded("queue full", {"Retry-After": "1"}))
    received = decode(as_received(encode(sent)))
    assert isinstance(received, Failure)
    error = received.error()
    assert isinstance(error, Overloaded) and error.status_code == 429
    assert (error.message, error.headers) == ("queue full", {"Retry-After": "1"})
    late = decode(as_received(encode(Failure.of(1, DeadlineExceeded("late")))))
    assert isinstance(late, Failure) and type(late.error()) is DeadlineExceeded
    unknown = Failure(3, "from_a_newer_engine", "?").error()
    assert type(unknown) is ServiceError and unknown.status_code == 500


@pytest.mark.parametrize(
    "message",
    [
        Cancel([1, 2, 3]),
        Ping(),
        Pong("42-7", [ModelStatus("tiny_bi", "1", True, 17)], draining=True),
        Description("42-7", [{"name": "m", "version": "1", "spec": None, "error": "bad"}]),
    ],
)
def test_control_messages_survive_the_wire(message: object) -> None:
    assert decode(as_received(encode(message))) == message  # type: ignore[arg-type]


def test_frames_that_do_not_match_their_header_are_refused() -> None:
    header, array = pack({"op": "result", "id": 1, "outputs": [["x"]]}, [np.zeros(4, np.float32)])
    with pytest.raises(FrameError, match="2 frames"):
        unpack([header, bytes(array.data), b"extra"])
    with pytest.raises(FrameError, match="shape"):
        unpack([header, b"\0" * 12])
    (ping,) = pack({"op": "ping"}, [])
    with pytest.raises(FrameError, match="unknown message op"):
        decode([ping.replace(b"ping", b"pong!")])
    bad_dtype = b'{"op":"ping","arrays":[["object",[1]]]}'
    with pytest.raises(FrameError, match="dtype"):
        unpack([bad_dtype, b"\0" * 8])
    short = pack({"op": "result", "id": 1, "outputs": [["x", "y"]]}, [np.zeros(1, np.float32)])
    with pytest.raises(FrameError, match="malformed result"):
        decode(as_received(short))
