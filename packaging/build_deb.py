"""Build BlueOx's Debian package, blueox_<version>_<arch>.deb, with dpkg-deb.

``make deb`` runs it with the project's virtualenv (``--help`` lists the
options). It needs dpkg-deb, dpkg-shlibdeps (dpkg-dev), strip (binutils),
help2man, lintian for ``--lintian``, and the system Python the package runs
on (``--python``, /usr/bin/python3: Debian 12's 3.11).

The package carries a virtualenv at /opt/blueox made at build time from
wheels; nothing is downloaded, and pip does not run when it is installed:

1. ``python -m build --no-isolation`` makes BlueOx's sdist and, from it, its
   wheel (or ``--wheel`` names one). The wheels of its dependencies are packed
   from the distributions installed in the environment running this script,
   the versions ``make test`` tested there (`pack_installed`).
2. The system Python makes a virtualenv without pip at
   <staging>/opt/blueox, and this environment's pip installs the wheels into
   it (``pip --python``, ``--no-index``, ``--no-compile``).
3. Only the ``#!`` lines of the scripts in bin/, the activate scripts and
   pyvenv.cfg name the staging path: they are rewritten to /opt/blueox, and
   the build fails if any file or link still names it. bin/python links to
   the system's /usr/bin/python3.X, which the package depends on.
4. Compiled modules are stripped as dh_strip does, then imported once to
   prove they still load. No bytecode is shipped (Debian's Python policy):
   postinst byte-compiles /opt/blueox, prerm removes the caches.

Building the virtualenv here rather than in postinst (``pip install
--no-index`` from bundled wheels) means dpkg knows every file (``dpkg -L``,
md5sums, a clean removal), installing cannot half-fail in a resolver, and
what is installed is exactly what was built and checked by lintian.

Beside the virtualenv: the commands linked from /usr/bin with manual pages
made by help2man, the unit /lib/systemd/system/oxd.service and the conffile
/etc/blueox/oxd.toml (both from the wheel's package data, blueox/_data),
and the maintainer scripts, copyright and lintian overrides of packaging/.
"""

import argparse
import base64
import configparser
import email.parser
import gzip
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PREFIX = "/opt/blueox"
PACKAGE = "blueox"
MAINTAINER = "BlueOx maintainers <blueox@example.org>"
CONFFILE = "/etc/blueox/oxd.toml"
UNIT = "/lib/systemd/system/oxd.service"
# The NAME line of each command's manual page (help2man writes the rest from
# its --help); a command missing here gets a plain one.
MAN_NAMES = {
    "oxd": "BlueOx collector daemon",
    "oxctl": "show the status of a running oxd, stop it or re-point its forwarder",
    "oxview": "show BlueOx events, live from oxd or from log files",
    "oxingest": "send lines from stdin or files to oxd as BlueOx events",
    "oxstore": "manage BlueOx log files, locally and in S3",
    "oxstash": "ship BlueOx events to Elasticsearch",
    "oxcert": "make and check certificates for mutual TLS between oxd collectors",
    "oxreport": "sum up BlueOx events: counts, rates, percentiles, errors",
}
# Files of an installed distribution that pip writes itself.
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


class BuildError(Exception):
    """The package cannot be built; the message says why."""


_START = time.monotonic()


def say(message):
    """One line of progress on stderr, with the seconds since the start."""
    sys.stderr.write(f"[{time.monotonic() - _START:5.1f}s] {message}\n")


def run(argv, **kwargs):
    """Run a command; a failure is a `BuildError` showing its output."""
    result = subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs
    )
    if result.returncode:
        raise BuildError(
            f"{' '.join(map(str, argv))} exited {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def debian_version(version):
    """A PEP 440 version as a Debian version that sorts the same way:
    ``1.0.0rc1`` is ``1.0.0~rc1``, ``1.0.0.post1`` stays, ``1.0.0a1.dev2`` is
    ``1.0.0~a1~dev2``, and ``1.0.0.dev0`` is ``1.0.0~~dev0`` (before
    ``1.0.0~a1``, as in PEP 440: dpkg sorts ``~~`` before ``~a``)."""
    from packaging.version import Version

    v = Version(version)
    text = ".".join(map(str, v.release))
    if v.pre is not None:
        text += f"~{v.pre[0]}{v.pre[1]}"
    if v.post is not None:
        text += f".post{v.post}"
    if v.dev is not None:
        text += f"~dev{v.dev}" if v.pre is not None or v.post is not None else f"~~dev{v.dev}"
    if v.local is not None:
        text += f"+{v.local}"
    return f"{v.epoch}:{text}" if v.epoch else text


def build_wheel(source, out_dir):
    """BlueOx's sdist and, built from it, its wheel in ``out_dir``; the wheel's path."""
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out_dir, source], cwd=source)
    (wheel,) = [n for n in os.listdir(out_dir) if n.endswith(".whl")]
    return os.path.join(out_dir, wheel)


def wheel_metadata(wheel):
    """(METADATA as an email message, entry_points.txt as a ConfigParser) of a wheel."""
    with zipfile.ZipFile(wheel) as z:
        (info,) = {n.split("/")[0] for n in z.namelist() if n.split("/")[0].endswith(".dist-info")}
        metadata = email.parser.Parser().parsestr(z.read(f"{info}/METADATA").decode())
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.optionxform = str
        entry_points.read_string(z.read(f"{info}/entry_points.txt").decode())
    return metadata, entry_points


def dependency_closure(requirements):
    """Every installed distribution the requirement strings need, with the
    extras asked of each, as {canonical name: Distribution}."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dists, extras = {}, {}
    pending = [(text, frozenset()) for text in requirements]
    while pending:
        text, parent_extras = pending.pop()
        req = Requirement(text)
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": e}) for e in parent_extras | {""}
        ):
            continue
        name = canonicalize_name(req.name)
        if name in extras and set(req.extras) <= extras[name]:
            continue
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise BuildError(
                f"{req.name} is not installed in {sys.prefix} (make dev installs "
                f"BlueOx's dependencies there)"
            ) from None
        if not req.specifier.contains(dist.version, prereleases=True):
            raise BuildError(f"{req.name} {dist.version} is installed, BlueOx needs {req}")
        extras[name] = extras.get(name, set()) | set(req.extras)
        dists[name] = dist
        pending.extend((sub, frozenset(extras[name])) for sub in dist.requires or [])
    return dists


def _record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def pack_installed(dist, out_dir):
    """Pack an installed distribution back into a wheel in ``out_dir``; its path.

    The wheel holds the files its RECORD lists, less bytecode, pip's own
    records and the scripts pip writes from entry points; other scripts get
    their ``#!python`` line back, other files outside site-packages go to
    ``.data/data``. Its tags are those of the wheel it was installed from.
    """
    name, version = dist.metadata["Name"], dist.version
    if dist.files is None:
        raise BuildError(f"{name} {version} has no RECORD: reinstall it with pip")
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct_url.get("dir_info", {}).get("editable"):
        raise BuildError(f"{name} is installed in editable mode: install it from a wheel")
    tags = email.parser.Parser().parsestr(dist.read_text("WHEEL") or "").get_all("Tag")
    if not tags:
        raise BuildError(f"{name} {version} was not installed from a wheel: no tags")
    scripts = {ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")}
    (info,) = {f.parts[0] for f in dist.files if f.parts[0].endswith(".dist-info")}
    data = info[: -len(".dist-info")] + ".data"
    site_dir = os.path.normpath(str(dist.locate_file("")))
    prefix = os.path.normpath(os.path.join(site_dir, os.path.relpath(
        sysconfig.get_path("data"), sysconfig.get_path("purelib"))))
    stem = re.sub(r"[-_.]+", "_", name).lower()
    # The tags in the name, compressed: py2.py3-none-any.
    parts = zip(*(tag.split("-") for tag in tags))
    tag = "-".join(".".join(dict.fromkeys(part)) for part in parts)
    path = os.path.join(out_dir, f"{stem}-{version}-{tag}.whl")
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for file in dist.files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            if file.parts[0] == info and file.name in _INSTALLER_FILES:
                continue
            source = os.path.normpath(str(dist.locate_file(file)))
            if not os.path.isfile(source):
                raise BuildError(f"{name} {version}: {source} is in its RECORD but missing")
            with open(source, "rb") as f:
                content = f.read()
            if file.parts[0] == "..":
                relative = os.path.relpath(source, prefix)
                if relative.startswith(".."):
                    raise BuildError(f"{name} installed {source}, outside {prefix}")
                if os.path.dirname(relative) == "bin":
                    if file.name in scripts:
                        continue
                    if content.startswith(b"#!") and b"python" in content.split(b"\n", 1)[0]:
                        content = b"#!python\n" + content.split(b"\n", 1)[1]
                    arcname = f"{data}/scripts/{file.name}"
                else:
                    arcname = f"{data}/data/{relative}"
            else:
                arcname = file.as_posix()
            entry = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = (os.stat(source).st_mode & 0xFFFF) << 16
            z.writestr(entry, content)
            record.append(f"{arcname},{_record_hash(content)},{len(content)}")
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def system_python(python):
    """(the versioned interpreter ``python`` runs, e.g. /usr/bin/python3.11, "3.11")."""
    out = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    version = out.strip()
    real = os.path.realpath(shutil.which(python) or python)
    if os.path.basename(real) != f"python{version}":
        raise BuildError(f"{python} is {real}, not a python{version} the package can depend on")
    return real, version


def make_venv(python, staged_prefix, wheels, requirement):
    """A virtualenv of ``python`` at ``staged_prefix`` with ``requirement``
    installed from ``wheels`` alone, without bytecode."""
    run([python, "-m", "venv", "--without-pip", staged_prefix])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    run(
        [sys.executable, "-m", "pip", "--python", os.path.join(staged_prefix, "bin", "python"),
         "install", "--quiet", "--no-index", "--find-links", wheels, "--only-binary", ":all:",
         "--no-compile", "--no-cache-dir", "--no-warn-script-location", requirement],
        env=env,
    )


def relocate(root, staged_prefix, prefix):
    """Make the virtualenv at ``staged_prefix`` name ``prefix`` instead; fail
    if any file or link under ``root`` still names ``staged_prefix``."""
    old, new = staged_prefix.encode(), prefix.encode()
    candidates = [os.path.join(staged_prefix, "pyvenv.cfg")] + [
        os.path.join(staged_prefix, "bin", n) for n in os.listdir(os.path.join(staged_prefix, "bin"))
    ]
    for path in candidates:
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            content = f.read()
        if old in content:
            with open(path, "wb") as f:
                f.write(content.replace(old, new))
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                if os.readlink(path).startswith(staged_prefix):
                    raise BuildError(f"{path} links to the staging directory")
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    if old in f.read():
                        raise BuildError(f"{path} names the staging directory {staged_prefix}")


def elf_files(root):
    """Paths of the ELF files (compiled modules, bundled libraries) under ``root``."""
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                with open(path, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        found.append(path)
    return sorted(found)


def tidy(root):
    """Folders 0755; files 0755 if anyone could run them, else 0644, and shared
    objects 0644; no bytecode, no VCS files (Twisted ships .gitignore files)."""
    for directory, folders, files in os.walk(root):
        for name in list(folders):
            if name == "__pycache__":
                shutil.rmtree(os.path.join(directory, name))
                folders.remove(name)
            elif not os.path.islink(os.path.join(directory, name)):
                os.chmod(os.path.join(directory, name), 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            if name in (".gitignore", ".gitattributes", ".gitkeep"):
                os.remove(path)
            elif re.search(r"\.so(\.|$)", name):
                os.chmod(path, 0o644)
            else:
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o111 else 0o644)


def strip(staged_prefix, site):
    """Strip the compiled files as dh_strip does, then check that every
    compiled module still imports with the virtualenv's Python."""
    objects = elf_files(staged_prefix)
    if not objects:
        return
    run(["strip", "--remove-section=.comment", "--remove-section=.note",
         "--strip-unneeded", *objects])
    modules = []
    for path in objects:
        relative = os.path.relpath(path, site)
        folder, name = os.path.split(relative)
        if name.startswith("lib") or folder.endswith(".libs"):
            continue  # a library the modules load, not a module
        modules.append(".".join(folder.split(os.sep) + [name.split(".")[0]]).lstrip("."))
    run([os.path.join(staged_prefix, "bin", "python"), "-I", "-B", "-c",
         "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)", *modules])


def install_file(source, root, target, mode=0o644, content=None):
    """Put ``source`` (or ``content``) at ``target`` inside ``root``."""
    path = os.path.join(root, target.lstrip("/"))
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if content is None:
        shutil.copyfile(source, path)
    else:
        with open(path, "wb") as f:
            f.write(content)
    os.chmod(path, mode)
    return path


def man_pages(root, staged_prefix, staging, commands, version):
    """/usr/share/man/man1/<command>.1.gz for each command, made by help2man
    from its --help as the staged virtualenv runs it."""
    wrappers = os.path.join(staging, "commands")
    os.makedirs(wrappers)
    python = os.path.join(staged_prefix, "bin", "python")
    for command in commands:
        wrapper = os.path.join(wrappers, command)
        script = os.path.join(staged_prefix, "bin", command)
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec "{python}" -I -B "{script}" "$@"\n')
        os.chmod(wrapper, 0o755)
        page = run([
            "help2man", "--no-info", "--section=1", "--source=BlueOx",
            f"--name={MAN_NAMES.get(command, f'{command}, a BlueOx command')}",
            f"--version-string={version}", wrapper,
        ])
        install_file(None, root, f"/usr/share/man/man1/{command}.1.gz",
                     content=gzip.compress(page.encode(), compresslevel=9, mtime=0))


def changelog(version, maintainer, when):
    """A one-entry Debian changelog, compressed as lintian wants (gzip -9n)."""
    stamp = time.strftime("%d %b %Y %H:%M:%S +0000", time.gmtime(when))
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[time.gmtime(when).tm_wday]
    text = (
        f"{PACKAGE} ({version}) unstable; urgency=medium\n\n"
        f"  * BlueOx {version}: oxd as a systemd service, and its tools.\n\n"
        f" -- {maintainer}  {day}, {stamp}\n"
    )
    return gzip.compress(text.encode(), compresslevel=9, mtime=0)


def shlib_depends(root, staging):
    """The Depends dpkg-shlibdeps finds for the compiled files under ``root``
    (libraries bundled beside them in the wheels need none)."""
    objects = elf_files(root)
    if not objects:
        return ""
    libs = sorted({os.path.dirname(p) for p in objects})
    debian = os.path.join(staging, "debian")
    os.makedirs(debian, exist_ok=True)
    with open(os.path.join(debian, "control"), "w") as f:
        f.write(f"Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n")
    out = run(
        ["dpkg-shlibdeps", "-O", "--ignore-missing-info", "-e", *objects]
        + [f"-l{d}" for d in libs],
        cwd=staging,
    )
    match = re.search(r"^shlibs:Depends=(.*)$", out, re.M)
    return match.group(1).strip() if match else ""


def installed_size(root):
    """Installed-Size in KiB, counted as dpkg-gencontrol does."""
    total = 0
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and not os.path.islink(path):
                total += (os.path.getsize(path) + 1023) // 1024
            else:
                total += 1
    return total


def md5sums(root):
    lines = []
    for directory, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as f:
                digest = hashlib.md5(f.read()).hexdigest()
            lines.append(f"{digest}  {os.path.relpath(path, root)}\n")
    return "".join(lines).encode()


def build(args, staging):
    """Build the package in ``staging``; return its path in ``args.output``."""
    python, python_version = system_python(args.python)
    wheels = os.path.join(staging, "wheels")
    os.makedirs(wheels)
    if args.wheel:
        say(f"BlueOx's wheel: {args.wheel}")
        wheel = shutil.copy(args.wheel, wheels)
    else:
        say(f"building BlueOx's sdist and wheel from {args.source}")
        wheel = build_wheel(os.path.abspath(args.source), wheels)
        for name in os.listdir(wheels):
            if name.endswith(".tar.gz"):
                os.remove(os.path.join(wheels, name))
    metadata, entry_points = wheel_metadata(wheel)
    version = metadata["Version"]
    say("packing the installed dependencies as wheels")
    for dist in dependency_closure(metadata.get_all("Requires-Dist") or []).values():
        pack_installed(dist, wheels)

    root = os.path.join(staging, "root")
    staged_prefix = os.path.join(root, PREFIX.lstrip("/"))
    say(f"making the virtualenv with {python}")
    make_venv(python, staged_prefix, wheels, f"{PACKAGE}=={version}")
    relocate(root, staged_prefix, PREFIX)
    site = os.path.join(staged_prefix, "lib", f"python{python_version}", "site-packages")
    say("stripping compiled files")
    strip(staged_prefix, site)
    tidy(root)

    data = os.path.join(site, "blueox", "_data")
    install_file(os.path.join(data, "oxd.service"), root, UNIT)
    install_file(os.path.join(data, "oxd.toml"), root, CONFFILE)
    commands = sorted(entry_points["console_scripts"]) if "console_scripts" in entry_points else []
    os.makedirs(os.path.join(root, "usr", "bin"), mode=0o755)
    for command in commands:
        os.symlink(f"{PREFIX}/bin/{command}", os.path.join(root, "usr", "bin", command))
    say("manual pages")
    man_pages(root, staged_prefix, staging, commands, version)
    doc = f"/usr/share/doc/{PACKAGE}"
    install_file(os.path.join(HERE, "copyright"), root, f"{doc}/copyright")
    deb_version = debian_version(version)
    when = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    install_file(None, root, f"{doc}/changelog.gz", content=changelog(deb_version, args.maintainer, when))
    install_file(os.path.join(HERE, "lintian-overrides"), root, f"/usr/share/lintian/overrides/{PACKAGE}")

    arch = run(["dpkg", "--print-architecture"]).strip()
    depends = [f"python{python_version}", "adduser"]
    say("dpkg-shlibdeps")
    shlibs = shlib_depends(root, staging)
    if shlibs:
        depends.append(shlibs)
    sums, size = md5sums(root), installed_size(root)  # before DEBIAN/ exists
    control_dir = os.path.join(root, "DEBIAN")
    os.makedirs(control_dir, mode=0o755)
    with open(os.path.join(HERE, "control"), encoding="utf-8") as f:
        control = f.read()
    fields = {
        "VERSION": deb_version,
        "ARCH": arch,
        "MAINTAINER": args.maintainer,
        "INSTALLED_SIZE": str(size),
        "DEPENDS": ", ".join(depends),
    }
    control = re.sub(r"@([A-Z_]+)@", lambda m: fields[m.group(1)], control)
    install_file(None, control_dir, "control", content=control.encode())
    install_file(None, control_dir, "conffiles", content=f"{CONFFILE}\n".encode())
    install_file(None, control_dir, "md5sums", content=sums)
    for script in ("postinst", "prerm", "postrm"):
        install_file(os.path.join(HERE, script), control_dir, script, mode=0o755)

    os.makedirs(args.output, exist_ok=True)
    plain_version = deb_version.split(":", 1)[-1]
    deb = os.path.join(args.output, f"{PACKAGE}_{plain_version}_{arch}.deb")
    say(f"dpkg-deb ({args.compress})")
    level = [] if args.level is None else [f"-z{args.level}"]
    run(["dpkg-deb", "--root-owner-group", f"-Z{args.compress}", *level, "--build", root, deb])
    return deb


def lintian(deb):
    """Run lintian on ``deb``; its report, and whether it found errors."""
    result = subprocess.run(
        ["lintian", "--fail-on", "error", deb], capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )
    return result.stdout + result.stderr, result.returncode == 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="build_deb.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=ROOT, help="the BlueOx checkout (default: %(default)s)")
    parser.add_argument("--wheel", help="BlueOx's wheel, instead of building one from --source")
    parser.add_argument("--python", default="/usr/bin/python3",
                        help="the system Python the package runs on (default: %(default)s)")
    parser.add_argument("--output", default="dist", help="where the .deb goes (default: %(default)s)")
    parser.add_argument("--maintainer", default=os.environ.get("DEB_MAINTAINER") or MAINTAINER,
                        help="the Maintainer field (default: $DEB_MAINTAINER or %(default)s)")
    # lintian takes only xz and gzip (zstd is an error): dpkg-deb's -Z and -z.
    parser.add_argument("--compress", default="xz", choices=("xz", "gzip", "none"),
                        help="dpkg-deb's compressor (default: %(default)s)")
    parser.add_argument("--level", type=int, choices=range(10), metavar="0-9",
                        help="dpkg-deb's compression level (default: dpkg-deb's, 6 for xz)")
    parser.add_argument("--lintian", action="store_true", help="run lintian on the package")
    parser.add_argument("--keep", metavar="DIR", help="build in DIR and leave it there")
    args = parser.parse_args(argv)
    staging = args.keep or tempfile.mkdtemp(prefix="blueox-deb-")
    try:
        if args.keep:
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
        deb = build(args, staging)
    except BuildError as e:
        sys.stderr.write(f"build_deb.py: {e}\n")
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(staging, ignore_errors=True)
    if args.lintian:
        report, clean = lintian(deb)
        sys.stdout.write(report)
        if not clean:
            sys.stderr.write(f"build_deb.py: lintian found errors in {deb}\n")
            return 1
    print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
