"""Two annotators on one store: per-case locks and refused stale saves (nothing is lost)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.errors import LockedError, StaleSaveError
from napari_medseg.store import CaseStore


@pytest.fixture()
def two_sessions(tmp_path, hippo_cases):
    root = tmp_path / "store"
    CaseStore.init(root, labels={0: "background", 1: "Anterior", 2: "Posterior"}).import_case(*hippo_cases[0])
    alice, bob = CaseStore.open(root), CaseStore.open(root)  # two separate connections, as two machines
    yield alice, bob, alice.case_ids()[0]
    alice.close()
    bob.close()


def test_lock_held_by_someone_else_names_them_and_since_when(two_sessions):
    alice, bob, case = two_sessions
    alice.lock(case, "alice")
    since = bob.case(case).lock_since
    with pytest.raises(LockedError) as err:
        bob.lock(case, "bob")
    assert "alice" in str(err.value) and since in str(err.value)
    with pytest.raises(LockedError, match="alice"):
        bob.unlock(case, "bob")
    alice.lock(case, "alice")  # re-locking your own case is fine
    alice.unlock(case, "alice")
    bob.lock(case, "bob")
    assert alice.case(case).lock_owner == "bob"


def test_save_on_a_case_locked_by_someone_else_is_refused(two_sessions):
    alice, bob, case = two_sessions
    alice.lock(case, "alice")
    labels = bob.load_label(case).array
    with pytest.raises(LockedError, match="alice"):
        bob.save_version(case, labels, author="bob", parent=1)
    assert len(bob.versions(case)) == 1
    assert alice.save_version(case, labels, author="alice", parent=1).number == 2


def test_force_breaks_a_stale_lock_and_records_it(two_sessions):
    alice, bob, case = two_sessions
    alice.lock(case, "alice")
    bob.lock(case, "bob", force=True)
    assert alice.case(case).lock_owner == "bob"
    broken = [e for e in alice.events(case) if e.kind == "lock_broken"]
    assert len(broken) == 1 and broken[0].author == "bob" and "alice" in broken[0].detail


def test_stale_save_is_refused_naming_who_saved_between_and_resave_keeps_both(two_sessions):
    alice, bob, case = two_sessions
    base = alice.load_label(case).array
    # both open version 1
    alice_edit, bob_edit = base.copy(), base.copy()
    alice_edit.reshape(-1)[:30] = 1
    bob_edit.reshape(-1)[-30:] = 2
    v2 = alice.save_version(case, alice_edit, author="alice", parent=1)
    with pytest.raises(StaleSaveError) as err:
        bob.save_version(case, bob_edit, author="bob", parent=1)
    msg = str(err.value)
    assert "alice" in msg and v2.created_utc in msg and "version 2" in msg
    assert [v.number for v in bob.versions(case)] == [1, 2]
    v3 = bob.save_version(case, bob_edit, author="bob", parent=2, note="redone on top of alice's v2")
    assert (v3.number, v3.parent, v3.author) == (3, 2, "bob")
    np.testing.assert_array_equal(alice.load_label(case, 2).array, alice_edit)
    np.testing.assert_array_equal(alice.load_label(case, 3).array, bob_edit)
