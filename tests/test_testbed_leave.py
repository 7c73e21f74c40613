"""A node of a running cluster is killed with frames in flight: none is lost, every answer
still equals the whole model's, and the rest of the stream runs under a plan without it."""
import pytest

from tiercut.testbed.leave import run_with_a_node_leaving

pytestmark = pytest.mark.slow


def test_a_node_killed_mid_stream_loses_no_frame_and_is_planned_around():
    r = run_with_a_node_leaving("squeezenet1_1", caps=(0.5, 0.3, 0.3), frames=24, chunk=8,
                                log=lambda _: None)
    assert r.frames == 24  # every answer was checked against the whole model's as it came
    first, second, third = r.plans
    assert r.left in {n for s in first.stages for n in s.nodes}
    assert r.absent[0] == set() and r.left in r.absent[1]  # found gone in the chunk it left
    assert r.fell_back + r.failed_over >= 1  # its frames in flight went elsewhere
    assert r.left not in {n for s in third.stages for n in s.nodes}
    assert second is first  # the chunk it left in had started under the first plan


def test_leaving_needs_a_second_chunk():
    with pytest.raises(ValueError, match="more frames"):
        run_with_a_node_leaving(frames=8, chunk=8)
