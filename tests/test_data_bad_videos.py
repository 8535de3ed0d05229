"""The bad-video log: one row per file, counts carried across runs, old logs read, foreign files refused."""

import os

import pytest

from xclip_jax.data import bad_videos


def test_rows_per_file_counted_across_runs(tmp_path, caplog):
  path = str(tmp_path / "bad.tsv")
  log = bad_videos.BadVideoLog(path)
  for _ in range(3):
    log.record(bad_videos.BAD, "/d/a.mp4", "file not found")
  log.record(bad_videos.CUT_OFF, "/d/b.mp4", "/d/b.mp4: cut off: container says 60 frames, only the first 32 decode")
  log.record(bad_videos.BAD, "/d/c.mp4", "corrupt:\ttab\nand newline")
  with open(path) as f:
    assert f.read().splitlines() == [
        "path\tcount\terror", "/d/a.mp4\t3\tfile not found",
        "/d/b.mp4\t1\tcut off: container says 60 frames, only the first 32 decode",
        "/d/c.mp4\t1\tcorrupt: tab and newline"]
  # One warning per file, however often it is met.
  assert sum("/d/a.mp4" in r.getMessage() for r in caplog.records) == 1
  resumed = bad_videos.BadVideoLog(path)  # A resumed run counts on.
  resumed.record(bad_videos.BAD, "/d/a.mp4", "file not found")
  assert bad_videos.read_log(path)["/d/a.mp4"] == [4, "file not found"]
  assert sorted(os.listdir(tmp_path)) == ["bad.tsv"]  # Rewritten through a renamed temporary file.


def test_old_per_meeting_logs_are_read_and_foreign_files_refused(tmp_path):
  old = tmp_path / "old.tsv"
  old.write_text("/d/a.mp4\tfile not found\n/d/b.mp4\ttoo short\n/d/a.mp4\tfile not found\n")
  assert bad_videos.read_log(str(old)) == {"/d/a.mp4": [2, "file not found"], "/d/b.mp4": [1, "too short"]}
  foreign = tmp_path / "notes.tsv"
  foreign.write_text("name\tage\tcity\nx\t1\ty\n")
  with pytest.raises(ValueError, match="notes.tsv: not a bad-video log"):
    bad_videos.BadVideoLog(str(foreign))
  assert foreign.read_text() == "name\tage\tcity\nx\t1\ty\n"


def test_each_process_has_its_own_file_and_log_object():
  assert bad_videos.process_log_path("/r/bad.tsv", 0, 4) == "/r/bad.tsv"
  assert bad_videos.process_log_path("/r/bad.tsv", 3, 4) == "/r/bad.process3.tsv"
  assert bad_videos.for_path("", 0, 1) is bad_videos.for_path("", 0, 1)  # Shared by a process's iterators.
  assert bad_videos.decode_events(bad_videos.encode_events([("bad", "p", "why")])) == [("bad", "p", "why")]
  assert bad_videos.decode_events("") == []
