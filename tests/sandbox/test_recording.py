"""Recordings: written and read back unchanged; bad or foreign lines are file:line:col errors."""
import json

import pytest
from click.testing import CliRunner

from sandbox.cli import cli
from sandbox.recording import (FORMAT, VERSION, Provenance, RecordingError, read_recording,
                               render, write_recording)

PROV = Provenance("web-1", "6.1.0-18-amd64", "glibc 2.36", "x86_64", ["/srv/app", "--port", "80"],
                  "2026-01-31T12:00:00Z", 3600.5, "ebpf", 0, 0)
CALLS = {("x86_64", 0): 12, ("x86_64", 41): 3, ("i386", 5): 2, ("x32", 1): 1}
VALUES = {("x86_64", 41, 0): {2: 2, 10: 1}, ("x86_64", 41, 1): {1: 3}}


def header(**changes) -> str:
    head = {"type": "header", "format": FORMAT, "version": VERSION, **PROV.__dict__, "files": False}
    head.update(changes)
    return json.dumps({k: v for k, v in head.items() if v is not None})


def recording(tmp_path, *lines, name="r.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def problems(path) -> list[str]:
    with pytest.raises(RecordingError) as err:
        read_recording(path)
    return [d.format().splitlines()[0] for d in err.value.diagnostics]


def test_a_recording_reads_back_as_written_and_its_bytes_do_not_depend_on_order(tmp_path):
    path = str(tmp_path / "r.jsonl")
    write_recording(path, PROV, CALLS, VALUES)
    back = read_recording(path)
    assert back.provenance == PROV and back.calls == CALLS and back.arg_values == VALUES
    shuffled = dict(reversed(list(CALLS.items())))
    assert render(PROV, shuffled, VALUES) == open(path).read()
    lines = [json.loads(l) for l in open(path)]
    assert lines[1] == {"type": "syscall", "arch": "i386", "nr": 5, "name": "open", "count": 2}
    assert lines[-1] == {"type": "end", "calls": 18}


def test_the_files_and_ports_of_a_run_read_back_as_written(tmp_path):
    from sandbox.trace.files import Files, Net
    files = Files(denies={"/etc/shadow", "$HOME/.ssh"})
    files.add("read", "$CWD/app.conf")
    files.add("read", "/usr")
    files.add("write", "$HOME/out", "created by the run")
    net = Net(bind={"8000"}, connect={"443", "53"})
    path = str(tmp_path / "r.jsonl")
    write_recording(path, PROV, CALLS, VALUES, files, net)
    back = read_recording(path)
    assert back.files == files and back.net == net and back.calls == CALLS
    lines = [json.loads(l) for l in open(path)]
    assert lines[0]["files"] is True and lines[0]["version"] == 2
    assert [l["port"] for l in lines if l["type"] == "port"] == ["8000", "53", "443"]
    write_recording(path, PROV, CALLS, VALUES)
    back = read_recording(path)
    assert back.files is None and back.net is None       # not recorded: unrestricted


def test_a_version_1_recording_still_reads_and_recorded_no_files(tmp_path):
    path = recording(tmp_path, header(version=1, files=None), SYSCALL, END)
    back = read_recording(path)
    assert back.calls == {("x86_64", 0): 5} and back.files is None and back.net is None


SYSCALL = '{"type": "syscall", "arch": "x86_64", "nr": 0, "name": "read", "count": 5}'
END = '{"type": "end", "calls": 5}'


@pytest.mark.parametrize("lines, expected", [
    ((), [":1:1: error: empty recording"]),
    (('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}',),
     [":1:1: error: not an sbx recording: the first line must be its header"]),
    (("{", '  "defaultAction": "SCMP_ACT_ERRNO"', "}"),
     [":1:2: error: not an sbx recording: the first line is not JSON"]),
    ((header(version=3), SYSCALL, END),
     [":1:", "error: recording format version 3 is newer than this sbx reads (2)"]),
    ((header(version=1), SYSCALL, END), [":1:", "'files' came with version 2 of the format"]),
    ((header(files=None), SYSCALL, END), [":1:1: error: the header has no 'files'"]),
    ((header(), SYSCALL, '{"type": "deny", "path": "/etc/shadow"}', END),
     [":3:", "a deny line in a recording whose header does not say files: true"]),
    ((header(files=True), SYSCALL, '{"type": "file", "word": "reed", "path": "/x", "comment": ""}', END),
     [":3:", "unknown word \"reed\" (did you mean 'read'?)"]),
    ((header(files=True), SYSCALL, '{"type": "file", "word": "read", "path": "x", "comment": ""}', END),
     [":3:", "bad path \"x\""]),
    ((header(files=True), SYSCALL, '{"type": "port", "key": "connect", "port": 443}', END),
     [":3:", "bad port 443", 'a TCP port as a string']),
    ((header(files=True), SYSCALL, '{"type": "port", "key": "connect", "port": "443"}',
      '{"type": "port", "key": "connect", "port": "443"}', END),
     [":4:1: error: a second port line for the same port"]),
    ((header(arch="sparc"), SYSCALL, END), ["error: bad 'arch' in the header: \"sparc\""]),
    ((header(started="yesterday"), SYSCALL, END), ["error: bad 'started' in the header"]),
    ((header(), '{"type": "syscal", "arch": "x86_64", "nr": 0, "count": 5}', END),
     [":2:2: error: unknown line type \"syscal\" (did you mean 'syscall'?)"]),
    ((header(), '{"type": "syscall", "arch": "x86_64", "nr": 0, "name": "read", "cuont": 5}', END),
     [":2:", "error: unknown key 'cuont' in a syscall line (did you mean 'count'?)"]),
    ((header(), '{"type": "syscall", "arch": "x86_64", "nr": 0, "name": "write", "count": 5}', END),
     [":2:", "error: x86_64 syscall 0 is read, not 'write'"]),
    ((header(), '{"type": "syscall", "arch": "x86_64", "nr": 0, "name": "read", "count": 0}', END),
     ["error: bad count 0 (a positive integer)"]),
    ((header(), SYSCALL, SYSCALL, END), [":3:1: error: a second syscall line for the same call"]),
    ((header(), SYSCALL, '{"type": "arg", "arch": "x86_64", "nr": 41, "name": "socket", '
      '"index": 0, "value": 2, "count": 1}', END),
     [":3:1: error: argument values of a syscall no syscall line counts (x86_64 41)"]),
    ((header(), SYSCALL, '{"type": "end", "calls": 7}'),
     [":3:", "error: the end line counts 7 calls, the syscall lines 5"]),
    ((header(), SYSCALL), [":2:1: error: the recording ends without its end line"]),
    ((header(), SYSCALL, END, SYSCALL), [":4:1: error: a line after the end line (line 3)"]),
    ((header(), "read 5", END), [":2:1: error: not JSON: Expecting value"]),
    ((header(), '{"n": ' + "9" * 5000 + "}", END), [":2:1: error: not JSON: Exceeds the limit"]),
    ((header(), "[" * 100000 + "]" * 100000, END), [":2:1: error: not JSON: nested too deeply"]),
], ids=["empty", "a Docker profile", "multi-line JSON", "a newer version", "files in version 1",
        "no files flag", "files not recorded", "unknown word", "relative path", "port as a number",
        "port twice", "unknown arch",
        "bad time", "unknown type", "unknown key", "wrong name", "zero count", "twice",
        "values of an uncounted syscall", "counts do not add up", "cut short", "after the end",
        "not JSON", "a 5000-digit number", "nested too deeply"])
def test_bad_and_foreign_recordings_are_errors_with_their_position(tmp_path, lines, expected):
    path = recording(tmp_path, *lines) if lines else str(tmp_path / "empty.jsonl")
    if not lines:
        open(path, "w").close()
    found = problems(path)
    assert len(found) == 1, found
    assert found[0].startswith(path + ":")
    for part in expected:
        assert part in found[0], found


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = recording(tmp_path, header(),
                     '{"type": "syscall", "arch": "x86_64", "nr": 0, "name": "write", "count": 5}',
                     '{"type": "syscal"}',
                     '{"type": "syscall", "arch": "x86_64", "nr": 1, "name": "write", "count": -1}',
                     '{"type": "end", "calls": "many"}')
    found = problems(path)
    assert [f.split(": error")[0].rsplit(":", 2)[1] for f in found] == ["2", "3", "4", "5"]


def test_profile_build_prints_every_file_s_errors_and_exits_2(tmp_path):
    bad = recording(tmp_path, '{"hello": 1}', name="bad.jsonl")
    cut = recording(tmp_path, header(), SYSCALL, name="cut.jsonl")
    result = CliRunner().invoke(cli, ["profile", "build", bad, cut, "-o", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2
    assert f"{bad}:1:1: error: not an sbx recording" in result.output
    assert f"{cut}:2:1: error: the recording ends without its end line" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "p.yaml").exists()


def test_trace_record_needs_a_command_and_an_output(tmp_path):
    result = CliRunner().invoke(cli, ["trace", "--record", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 2 and "give a COMMAND to trace" in result.output
    result = CliRunner().invoke(cli, ["trace", "--", "true"])
    assert result.exit_code == 2 and "give -o PROFILE.yaml, --record OUT.jsonl, or both" in result.output
    result = CliRunner().invoke(cli, ["trace", "-o", str(tmp_path / "p.yaml"), "--baseline", "7.1",
                                      "--", "true"])
    assert result.exit_code == 2 and "baseline 7.1 is newer than the syscall tables" in result.output
