"""The image `.ci/image` builds, read and run without a Docker engine, as root.

Why this way: buildah (daemonless) stores the image; its configuration comes from ``buildah inspect``,
and its file system from a working container that ``buildah mount`` exposes as a plain directory. A
container is then made the way a runtime makes one, with the kernel's own tools: ``unshare`` gives a
private mount namespace and a PID namespace (so the entry point is PID 1 and receives SIGTERM itself,
as under Docker and the kubelet), the root file system is bind-mounted read-only (the chart sets
readOnlyRootFilesystem), the socket volume is a host directory bind-mounted over the image's VOLUME,
and ``chroot --userspec`` drops to the user the pod runs as. The network is the host's, so the
container reaches the test session's Apache Kafka on 127.0.0.1. ``buildah run`` was not used: it runs
a command given to it, not the image's entry point, and with chroot isolation (all there is without a
daemon's runtime here) it shares the host's PID namespace, so the entry point is not PID 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from kafka_helpers import ManagedProcess

#: The image `.ci/image` builds for this checkout (its IMAGE default); KAFKA_SIDECAR_IMAGE names another.
IMAGE = os.environ.get(
    "KAFKA_SIDECAR_IMAGE",
    "localhost/kafka-sidecar:ci-" + re.sub(r"[^A-Za-z0-9_.-]", "-", Path(__file__).parents[2].name)[:100],
)
#: .ci/image's storage: every buildah call must use the same driver to see the image.
BUILDAH = ("buildah", "--storage-driver", "vfs")
BUILD_HINT = "build it first with `bash .ci/image` (as root; Debian: apt-get install buildah debootstrap)"

#: The host devices a runtime gives a container's /dev.
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# Run by `unshare` in the new namespaces: make the container's mounts, then become its entry point.
# $1 root file system, $2 host volume directory, $3 its mount point in the image, $4 uid:gid; the rest
# is the command. The mounts vanish with the namespace (unshare makes its propagation private).
_LAUNCH = """set -e
root=$1 volume=$2 target=$3 user=$4
shift 4
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$volume" "$root$target"
mount -t proc proc "$root/proc"
mount -t tmpfs -o size=64k,mode=0755 tmpfs "$root/dev"
for device in {devices}; do
    touch "$root/dev/$device"
    mount --bind "/dev/$device" "$root/dev/$device"
done
exec chroot --userspec="$user" --groups="${{user#*:}}" "$root" "$@"
""".format(devices=" ".join(_DEVICES))


class ImageError(Exception):
    """The image cannot be read: buildah is missing, or the image was not built."""


def buildah(*args: str, timeout: float = 120.0) -> str:
    """Run buildah with .ci/image's storage and return its output; a failure raises ImageError."""
    exe = shutil.which(BUILDAH[0])
    if exe is None:
        raise ImageError(f"buildah is not installed, so the image cannot be read: {BUILD_HINT}")
    result = subprocess.run(
        [exe, *BUILDAH[1:], *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise ImageError(f"buildah {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


class Image(NamedTuple):
    """What the built image says about itself: its Docker config, layer sizes and base image."""

    name: str
    config: dict[str, Any]
    layer_sizes: list[int]
    base_layer_sizes: list[int]

    @property
    def size(self) -> int:
        """Bytes of all layers, uncompressed (what `docker images` reports)."""
        return sum(self.layer_sizes)

    @property
    def env(self) -> dict[str, str]:
        return dict(entry.split("=", 1) for entry in self.config.get("Env") or [])

    @property
    def user(self) -> tuple[int, int]:
        """The image's USER as numbers: Kubernetes' runAsNonRoot can only check a numeric user."""
        uid, _, gid = str(self.config["User"]).partition(":")
        return int(uid), int(gid or uid)


def _inspect(name: str) -> dict[str, Any]:
    try:
        info: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", name))
    except ImageError as exc:
        if "buildah is not installed" in str(exc):
            raise
        raise ImageError(f"no image {name} in buildah's vfs storage: {BUILD_HINT} ({exc})") from None
    return info


def load_image(name: str = IMAGE) -> Image:
    """The image's configuration and layers, and its base's layers (named in its OCI base label)."""
    info = _inspect(name)
    config: dict[str, Any] = info["Docker"]["config"]
    layers = [layer["size"] for layer in json.loads(info["Manifest"])["layers"]]
    base_name = config["Labels"]["org.opencontainers.image.base.name"]
    base_layers = [layer["size"] for layer in json.loads(_inspect(base_name)["Manifest"])["layers"]]
    return Image(name, config, layers, base_layers)


@contextlib.contextmanager
def mounted_rootfs(name: str = IMAGE) -> Iterator[Path]:
    """The image's file system as a directory (a buildah working container), removed afterwards."""
    container = buildah("from", "--pull-never", "--quiet", name).strip()
    try:
        yield Path(buildah("mount", container).strip())
    finally:
        with contextlib.suppress(ImageError, subprocess.TimeoutExpired):
            buildah("rm", container)


def run_in_rootfs(
    rootfs: Path, argv: Sequence[str], *, user: tuple[int, int], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the image's file system as `user`, with `env` only (a one-off `docker run`)."""
    uid, gid = user
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return subprocess.run(
        [chroot, f"--userspec={uid}:{gid}", f"--groups={gid}", str(rootfs), *argv],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Container(ManagedProcess):
    """The image's entry point running as a container: PID 1 of its own PID namespace, read-only root,
    the socket volume bind-mounted, as the given user, on the host network. The process this handle
    starts is `unshare`, which passes PID 1's exit status on; signals go to PID 1 itself, by PID."""

    def __init__(
        self,
        rootfs: Path,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        user: tuple[int, int],
        volume: Path,
        volume_target: str,
        log_path: Path,
    ) -> None:
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        uid, gid = user
        # The host tools the launcher uses (mount, chroot) are found on the image's PATH, which has the
        # standard directories; the entry point is found on the same PATH inside the root.
        cmd = [unshare, "--mount", "--pid", "--fork", "--kill-child=SIGKILL", "--propagation", "private"]
        cmd += ["/bin/sh", "-c", _LAUNCH, "launch", str(rootfs), str(volume), volume_target, f"{uid}:{gid}"]
        super().__init__([*cmd, *argv], env, log_path, name="container")
        self.rootfs = rootfs
        self.user = user

    def pid1(self, timeout: float = 10.0) -> int:
        """The host PID of the container's PID 1 (unshare's one child), once it runs the entry point."""
        deadline = time.monotonic() + timeout
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int(children.read_text().split()[0])
                if Path(f"/proc/{pid}/root").resolve() == self.rootfs.resolve():
                    return pid  # chroot done: PID 1 is the entry point now
            if not self.is_running():
                raise AssertionError(f"the container exited with {self.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise AssertionError(f"no PID 1 running in the image's root after {timeout}s:\n{self.log_tail()}")

    def send_signal(self, sig: int) -> None:
        """Signal PID 1, as `docker stop` and the kubelet do (a SIGKILL takes the whole namespace)."""
        if self.is_running():
            with contextlib.suppress(ProcessLookupError, AssertionError):
                os.kill(self.pid1(timeout=1), sig)

    def exec(self, argv: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the running container (its mounts, PID namespace, root and user) with the
        container's environment, as `docker exec` and Docker's HEALTHCHECK do."""
        nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
        uid, gid = self.user
        enter = [nsenter, "-t", str(self.pid1()), "--mount", "--pid", "--root", "--wd", "-S", str(uid)]
        return subprocess.run(
            [*enter, "-G", str(gid), *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status_ids(self, field: str) -> list[int]:
        """The real, effective, saved and file-system ids of PID 1 ("Uid" or "Gid")."""
        for line in Path(f"/proc/{self.pid1()}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return [int(x) for x in line.split()[1:]]
        raise AssertionError(f"no {field} line in /proc status")
