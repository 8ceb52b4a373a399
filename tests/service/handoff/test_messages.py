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


def only(frames: list[bytes]) -> object:
    """The one message of ``frames``."""
    (message,) = decode(frames)
    return message


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
    received = only(as_received(encode([sent])))
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
    frames = as_received(encode([Result(1, [{"outputs": sequence}])]))
    received = only(frames)
    assert isinstance(received, Result)
    array = received.results[0]["outputs"]
    assert not array.flags.writeable and not array.flags.owndata
    assert np.shares_memory(array, np.frombuffer(frames[1], np.float32))


def test_a_non_contiguous_array_is_sent_as_its_values() -> None:
    states = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    column = states[:, 1]  # (dirs, H) of one row of a batch: not contiguous
    received = only(as_received(encode([Result(2, [{"final_c_0": column}])])))
    assert isinstance(received, Result)
    np.testing.assert_array_equal(received.results[0]["final_c_0"], column)


def test_a_failure_comes_back_as_its_own_error_class() -> None:
    sent = Failure.of(9, Overloaded("queue full", {"Retry-After": "1"}))
    received = only(as_received(encode([sent])))
    assert isinstance(received, Failure)
    error = received.error()
    assert isinstance(error, Overloaded) and error.status_code == 429
    assert (error.message, error.headers) == ("queue full", {"Retry-After": "1"})
    late = only(as_received(encode([Failure.of(1, DeadlineExceeded("late"))])))
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
    assert only(as_received(encode([message]))) == message  # type: ignore[arg-type]


def test_several_messages_travel_in_one_and_keep_their_own_arrays() -> None:
    first = Result(1, [{"probs": np.array([0.5, 0.5], np.float32)}])
    second = Failure.of(2, Overloaded("full"))
    third = Result(3, [{"probs": np.array([1.0, 0.0], np.float32)}, {}])
    frames = as_received(encode([first, second, third]))
    assert len(frames) == 1 + 2  # one header frame, one frame per array
    received = decode(frames)
    assert [type(m) for m in received] == [Result, Failure, Result]
    assert isinstance(received[2], Result)
    np.testing.assert_array_equal(received[2].results[0]["probs"], [1.0, 0.0])
    assert received[2].results[1] == {}


def test_frames_that_do_not_match_their_header_are_refused() -> None:
    header, array = pack(
        [({"op": "result", "id": 1, "outputs": [["x"]]}, [np.zeros(4, np.float32)])]
    )
    with pytest.raises(FrameError, match="2 frames"):
        unpack([header, bytes(array.data), b"extra"])
    with pytest.raises(FrameError, match="shape"):
        unpack([header, b"\0" * 12])
    (ping,) = pack([({"op": "ping"}, [])])
    with pytest.raises(FrameError, match="unknown message op"):
        decode([ping.replace(b"ping", b"pong!")])
    with pytest.raises(FrameError, match="unreadable"):
        decode([b"not json"])
    bad_dtype = b'[{"op":"ping","arrays":[["object",[1]]]}]'
    with pytest.raises(FrameError, match="dtype"):
        unpack([bad_dtype, b"\0" * 8])
    short = pack([({"op": "result", "id": 1, "outputs": [["x", "y"]]}, [np.zeros(1, np.float32)])])
    with pytest.raises(FrameError, match="malformed result"):
        only(as_received(short))
