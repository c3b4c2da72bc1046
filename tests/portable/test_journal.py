"""The durable journal: bounded outbox with priorities, inbox, and power cuts mid-write."""
from spot import journal, storage
from spot.journal import PRIO_ALARM, PRIO_RESULT, PRIO_TELEMETRY, Journal

from expect import remove_tree, scratch_dir


class _Cut(Exception):
    pass


def test_outbox_drops_oldest_telemetry_first_and_counts():
    j = Journal(None, max_outbox=4)
    assert j.add(PRIO_TELEMETRY, b"t1") and j.add(PRIO_RESULT, b"r1")
    assert j.add(PRIO_TELEMETRY, b"t2") and j.add(PRIO_ALARM, b"a1")
    assert j.add(PRIO_RESULT, b"r2")  # full: t1, the oldest telemetry, goes
    assert [f for _, f in j.pending()] == [b"r1", b"t2", b"a1", b"r2"]
    assert j.add(PRIO_TELEMETRY, b"t3")  # t2 goes
    assert [f for _, f in j.pending()] == [b"r1", b"a1", b"r2", b"t3"]
    assert j.add(PRIO_ALARM, b"a2")  # only telemetry is below: t3 goes
    assert j.add(PRIO_ALARM, b"a3")  # then the oldest result
    assert [f for _, f in j.pending()] == [b"a1", b"r2", b"a2", b"a3"]
    assert not j.add(PRIO_TELEMETRY, b"t4")  # ranks below everything held: refused
    assert j.dropped == 5


def test_delivered_entries_leave_and_the_rest_survive_a_reboot():
    path = scratch_dir()
    try:
        j = Journal(path + "/j.json")
        j.add(PRIO_RESULT, b"\x01\x02")
        j.add(PRIO_TELEMETRY, b"\x03")
        j.record(0x10001, 7, 0, 0)
        j.app["x"] = 1
        j.commit([[1, 2, 3, 4]])
        ids = [i for i, _ in j.pending()]
        j.delivered({ids[0]})
        j.commit()
        again = Journal(path + "/j.json")
        assert [f for _, f in again.pending()] == [b"\x03"]
        assert again.result(0x10001, 7) == (0, 0) and again.result(0x10001, 8) is None
        assert again.windows == [[1, 2, 3, 4]] and again.app == {"x": 1}
        assert again.next_id == j.next_id  # ids never reused
    finally:
        remove_tree(path)


def test_power_cut_at_every_step_of_a_write_leaves_old_or_new():
    path = scratch_dir()
    try:
        file = path + "/j.json"
        j = Journal(file)
        j.add(PRIO_RESULT, b"old")
        j.commit()
        for step in ("open", "half", "rename"):
            def cut(where, link=None, step=step):
                if where == step:
                    raise _Cut(where)

            j = Journal(file)
            j.add(PRIO_RESULT, b"new-" + step.encode())
            storage.fault = cut
            try:
                j.commit()
            except _Cut:
                pass
            finally:
                storage.fault = None
            after = Journal(file)  # the reboot
            assert [f for _, f in after.pending()] == [b"old"], (step, after.pending())
        j = Journal(file)
        j.add(PRIO_RESULT, b"new")
        j.commit()
        assert [f for _, f in Journal(file).pending()] == [b"old", b"new"]
    finally:
        remove_tree(path)


def test_inbox_is_bounded_like_the_replay_window():
    j = Journal(None, max_inbox=journal.MAX_INBOX)
    for seq in range(1, 200):
        j.record(1, seq, 0, 0)
    assert len(j.inbox) == journal.MAX_INBOX
    assert j.result(1, 199) == (0, 0) and j.result(1, 100) is None
