"""``sbx export`` and ``sbx import``: the command-line side of ``sandbox.interop``."""
from __future__ import annotations

import json
import os
import sys
import tempfile

import click

from .common import ARCH_CHOICES, OutputPath, emit, fail, load, native, warn
from ..policy.diagnostics import Diagnostic, PolicyError






def _libseccomp_knows():
    """A name check against this machine's libseccomp (-1 is __NR_SCMP_ERROR), or None without it."""
    try:
        import pyseccomp
    except (ImportError, OSError):
        return None
    native = pyseccomp.system_arch()
    return lambda name: pyseccomp.resolve_syscall(native, name) != -1


def _systemd_features() -> set[str] | None:
    """The +FEATURE/-FEATURE words of this machine's `systemctl --version`, or None without systemd."""
    import shutil
    import subprocess
    tool = shutil.which("systemctl")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {w for w in out.split() if w[:1] in "+-"}


RUNTIME_FORMATS = ("oci", "docker", "k8s")      # run by runc/crun: the runtime preset applies


@click.command()
@click.argument("profile")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker", "systemd", "k8s"]), default="docker",
              show_default=True, help="oci/docker: linux.seccomp JSON; k8s: a SeccompProfile manifest "
              "(+ the localhost JSON with -o)")
@click.option("-o", "--output", type=OutputPath(),
              help="file (k8s: FILE.yaml and FILE.json beside it; a directory gets NAME.yaml and NAME.json)")
@click.option("--arch", type=click.Choice(ARCH_CHOICES), default="native", show_default=True,
              help="what 'native' means in the profile")
@click.option("--api-version", type=click.Choice(["v1", "v1beta1"]), default="v1", show_default=True,
              help="k8s: security-profiles-operator API (v1: operator 1.0+, v1beta1: older)")
@click.option("--no-runtime-preset", is_flag=True,
              help="oci/docker/k8s: leave out the calls runc/crun make after installing the filter")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="bind a variable of the profile's paths and ports ($CWD, $EXEC_ROOT, ${PORT}, ...; "
              "systemd: $HOME and $TMPDIR are %h and %T unless bound); repeatable")
def export(profile, fmt, output, arch, api_version, no_runtime_preset, variables):
    """Write PROFILE for a container runtime, Kubernetes or systemd.

    Rules are first-match in sbx and order-free in libseccomp: each syscall's
    argument space is split exactly and written as entries libseccomp decides
    the same way.  For container runtimes the OCI runtime preset
    (profiles/presets/oci-runtime.yaml: what runc and crun call after installing
    the filter) comes first.  The profile's files, ports, capabilities and
    scopes become systemd settings; the other formats carry the filter only and
    name the runtime's own settings for the rest.  What a format cannot express
    is reported on stderr.
    """
    from .. import interop
    prof = load(profile)
    try:
        bound, notes = interop.bind_vars(prof, list(variables))
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--var") from err
    warn(notes, prof.sources)
    host = native(arch)
    if fmt in RUNTIME_FORMATS:
        if no_runtime_preset:
            click.echo("sbx: without the OCI runtime preset (--no-runtime-preset): a profile traced from the "
                       "command alone stops runc/crun before the command starts", err=True)
        else:
            prof, added = interop.with_runtime_preset(prof, host)
            click.echo(interop.preset_note(added), err=True)
    an = interop.analyze(prof, host, low_word=fmt == "k8s")
    if fmt == "systemd":
        text, diags = interop.export_systemd(an, known=_libseccomp_knows(), bound=bound,
                                             features=_systemd_features())
        warn(diags, prof.sources)
        emit(text, output)
    elif fmt == "k8s":
        _export_k8s(interop, an, output, api_version, bound)
    else:
        spec, diags = interop.export_oci(an, comments=fmt == "docker", known=_libseccomp_knows(), bound=bound,
                                         losses=fmt)
        warn(diags, prof.sources)
        emit(json.dumps(spec, indent=2) + "\n", output)


def _export_k8s(interop, an, output: str | None, api_version: str, bound: dict) -> None:
    """The manifest alone on stdout (a stream kubectl apply takes); with -o also the localhost JSON."""
    manifest, local, diags = interop.export_k8s(an, api_version, known=_libseccomp_knows(), bound=bound)
    warn(diags, an.profile.sources)
    name = interop.k8s_name(an.profile.name)
    if not output:
        click.echo(f"sbx: the localhost JSON profile ({name}.json) is not part of the manifest stream; "
                   "-o DIR/ writes it beside the manifest", err=True)
        emit(manifest, None)
        return
    if os.path.exists(output) and not os.path.isfile(output) and not os.path.isdir(output):
        fail(f"cannot write the localhost JSON profile beside {output}: not a regular file",
             hint="give -o FILE.yaml (FILE.json goes beside it) or -o DIR/")
    if os.path.isdir(output) or output.endswith("/"):
        os.makedirs(output, exist_ok=True)
        yaml_path, json_path = os.path.join(output, f"{name}.yaml"), os.path.join(output, f"{name}.json")
    else:
        yaml_path, json_path = output, os.path.splitext(output)[0] + ".json"
    emit(manifest, yaml_path)
    emit(local, json_path)
    click.echo(f"sbx: wrote {yaml_path} (kubectl apply -f) and {json_path} (localhost profile)", err=True)


def _caps(text: str) -> frozenset[str]:
    from ..interop import DOCKER_CAPS
    out = set()
    for c in filter(None, (c.strip().upper() for c in text.split(","))):
        if c == "DOCKER":
            out.update(DOCKER_CAPS)
        else:
            out.add(c if c.startswith("CAP_") else f"CAP_{c}")
    return frozenset(out)


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=OutputPath(dir_okay=False),
              help="write the profile here (default: stdout)")
@click.option("--caps", default="", metavar="CAP,...",
              help="the container's capabilities for includes/excludes ('docker': Docker's default set)")
@click.option("--arch", type=click.Choice(["x86_64", "i386", "x32", "aarch64"]), default="x86_64",
              show_default=True, help="the container host's architecture")
@click.option("--kernel", metavar="X.Y", help="kernel version for includes.minKernel (default: taken as met)")
@click.option("--name", help="profile name (default: the file name without .json)")
def import_(file, output, caps, arch, kernel, name):
    """Turn an OCI/Docker seccomp JSON FILE into a commented sbx profile.

    The result is checked by loading it as sbx loads any profile.
    """
    from .. import interop
    from ..policy import load_profile
    kern = None
    if kernel:
        kern = interop.parse_kernel(kernel)
        if kern is None:
            raise click.BadParameter(f"'{kernel}' is not MAJOR.MINOR", param_hint="--kernel")
    from ..policy.diagnostics import decode_utf8
    from ..paths import read_input
    try:
        raw = read_input(file)
    except OSError as err:
        fail(f"cannot read {file}: {err.strerror or err}")
    text, bad = decode_utf8(raw, file, "the JSON file")
    if bad is not None:
        raise PolicyError([bad], {file: raw.decode("utf-8", "replace").splitlines(keepends=True)})
    opts = interop.ImportOptions(_caps(caps), arch, kern, name)
    yaml_text, diags = interop.import_oci(text, file, opts)
    warn(diags, {file: text.splitlines(keepends=True)})
    with tempfile.TemporaryDirectory() as tmp:
        check = os.path.join(tmp, "imported.yaml")
        emit(yaml_text, check)
        try:
            load_profile(check)
        except PolicyError as err:
            raise PolicyError(err.diagnostics + [Diagnostic(None, "the imported profile does not load; "
                                                            "please report this")], err.sources) from err
    if output:
        emit(yaml_text, output)
    else:
        sys.stdout.write(yaml_text)
