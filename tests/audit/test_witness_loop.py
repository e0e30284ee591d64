"""The log's witness schedule: a round only when the tree grew, or while a witness still
lacks the latest checkpoint (it was down); a failing round never stops the loop."""

from __future__ import annotations

from taxaddr.audit.witnessing import WitnessLoop


def test_rounds_only_when_the_tree_grew_or_a_witness_is_missing() -> None:
    size = [5]
    missing = [0]
    loop = WitnessLoop(lambda: missing[0], lambda: size[0], 10.0)
    loop.tick()
    assert loop.rounds == 1
    loop.tick()
    loop.tick()
    assert loop.rounds == 1  # nothing grew, every witness cosigned: no request
    size[0] = 6
    missing[0] = 1  # one witness is down during this round
    loop.tick()
    assert loop.rounds == 2
    loop.tick()  # the same size, but a witness still lacks it: try again
    assert loop.rounds == 3
    missing[0] = 0  # it is back and cosigned
    loop.tick()
    assert loop.rounds == 4
    loop.tick()
    assert loop.rounds == 4


def test_a_failing_round_is_retried_and_does_not_escape() -> None:
    calls = []

    def round_() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database away")
        return 0

    loop = WitnessLoop(round_, lambda: 3, 10.0)
    loop.tick()
    loop.tick()
    loop.tick()
    assert len(calls) == 2
