"""The workdir's wall-time ledger (alignax/workdir.py)."""

import json

from alignax.workdir import accumulate_timings


def test_timings_add_up_over_stages_and_invocations(tmp_path):
    accumulate_timings(tmp_path, {"seconds/pretrain": 2.0})
    accumulate_timings(tmp_path, {"seconds/ppo": 3.0})
    # e.g. a second width, or a resumed run: added to what is there; other keys kept.
    total = accumulate_timings(tmp_path, {"seconds/pretrain": 1.5})
    assert total == {"seconds/pretrain": 3.5, "seconds/ppo": 3.0}
    assert json.loads((tmp_path / "timings.json").read_text()) == total


def test_timings_ledger_in_a_directory_not_made_yet(tmp_path):
    total = accumulate_timings(tmp_path / "seed0", {"seconds/eval": 1.0})
    assert total == {"seconds/eval": 1.0} and (tmp_path / "seed0" / "timings.json").exists()
