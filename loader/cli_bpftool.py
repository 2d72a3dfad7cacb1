"""`bpfload prog show`, `bpfload map show`, `bpfload map dump`: bpftool's text, over any kernel.

The lines are bpftool's plain output (prog.c / map.c print_*_plain): the same fields in the
same order with the same spacing, built from the same sources - GET_NEXT_ID, GET_FD_BY_ID,
OBJ_GET_INFO_BY_FD and, where the kernel has it, /proc/self/fdinfo (memlock, frozen) - so on
Linux the output can be compared with bpftool's line by line. bpftool's "pids" lines (which
need a BPF iterator) are left out, and map dumps are in bpftool's hex layout (what it prints
for maps without BTF).

The simulated kernel lives inside the process, so a fresh one holds nothing: ``--load OBJ``
brings an object's maps and programs into it first, and ``--run S`` also attaches them where
their sections say and lets the workload run S seconds, so the maps have something to show.
The same functions serve `bpfload run --bpftool` and the notebooks.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from kernel_sim.uapi.bpf import (
    BpfCmd,
    BpfMapInfo,
    BpfProgInfo,
    GetIdAttr,
    InfoAttr,
    MapElemAttr,
    MapType,
    ProgType,
    make_attr,
)

from .backends import KERNEL_KINDS
from .cli import ARCHES, CliError, subcommand

_PERCPU = {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH}
_NO_DUMP = {MapType.RINGBUF, MapType.QUEUE, MapType.STACK}


# -- reading the kernel's objects ---------------------------------------------------------------------
def _ids(sys: Any, cmd: int) -> Iterator[int]:
    start = 0
    while True:
        attr = make_attr(GetIdAttr, start_id=start)
        try:
            sys.bpf(cmd, attr)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        start = GetIdAttr.from_buffer_copy(bytes(attr)[: ctypes.sizeof(GetIdAttr)]).next_id
        yield start


def _fd_by_id(sys: Any, cmd: int, obj_id: int) -> int:
    return sys.bpf(cmd, make_attr(GetIdAttr, start_id=obj_id))


def _info(sys: Any, fd: int, info: ctypes.Structure) -> ctypes.Structure:
    sys.bpf(BpfCmd.OBJ_GET_INFO_BY_FD, make_attr(InfoAttr, bpf_fd=fd, info_len=ctypes.sizeof(info),
                                                 info=ctypes.addressof(info)))
    return info


def prog_info(sys: Any, fd: int) -> tuple[BpfProgInfo, list[int]]:
    """The program's info and its map ids (a second call with room for them, as bpftool does)."""
    info = _info(sys, fd, BpfProgInfo())
    n = info.nr_map_ids
    if not n:
        return info, []
    ids = (ctypes.c_uint32 * n)()
    again = BpfProgInfo(nr_map_ids=n, map_ids=ctypes.addressof(ids))
    _info(sys, fd, again)
    return info, list(ids[: min(n, again.nr_map_ids)])


def fdinfo(sys: Any, fd: int) -> dict[str, str]:
    """/proc/self/fdinfo/FD of the kernel in use, as key -> value ({} where it has none)."""
    try:
        ffd = sys.openat(f"/proc/self/fdinfo/{fd}", os.O_RDONLY)
    except OSError:
        return {}
    try:
        text = b""
        while chunk := sys.read(ffd, 4096):
            text += chunk
    finally:
        sys.close(ffd)
    out = {}
    for line in text.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


# -- bpftool's formats ----------------------------------------------------------------------------
def hex_bytes(data: bytes, sep: str = " ") -> str:
    """bpftool's fprint_hex: bytes in hex, two spaces every 8, a new line every 16."""
    out = []
    for i, b in enumerate(data):
        if i:
            out.append("\n" if i % 16 == 0 else "  " if i % 8 == 0 else sep)
        out.append(f"{b:02x}")
    return "".join(out)


def _type_name(enum: Any, value: int) -> str:
    try:
        return enum(value).name.lower()
    except ValueError:
        return ""


def _uptime_ns(sys: Any) -> int | None:
    """The kernel's time since boot, from its /proc/uptime (None if it has none)."""
    try:
        fd = sys.openat("/proc/uptime", os.O_RDONLY)
    except OSError:
        return None
    try:
        text = sys.read(fd, 128).decode()
    finally:
        sys.close(fd)
    try:
        return int(float(text.split()[0]) * 1e9)
    except (ValueError, IndexError):
        return None


def boot_time(sys: Any, since_boot_ns: int) -> str:
    """bpftool's print_boot_time: a boot-relative time as local wall-clock time."""
    if sys.kind == "linux":
        now_boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    else:
        now_boot = _uptime_ns(sys)
        if now_boot is None:  # kernel_sim stamps programs with the host's monotonic clock
            now_boot = time.monotonic_ns()
    wall = time.time() - (now_boot - since_boot_ns) / 1e9
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall))


def prog_show_lines(sys: Any, fd: int) -> list[str]:
    info, map_ids = prog_info(sys, fd)
    kind = _type_name(ProgType, info.type)
    head = f"{info.id}: " + (f"{kind}  " if kind else f"type {info.type}  ")
    name = info.name.decode(errors="replace")
    if name:
        head += f"name {name}  "
    head += "tag " + bytes(info.tag).hex()
    if info.gpl_compatible & 1:
        head += "  gpl"
    if info.run_time_ns:
        head += f" run_time_ns {info.run_time_ns} run_cnt {info.run_cnt}"
    if info.recursion_misses:
        head += f" recursion_misses {info.recursion_misses}"
    lines = [head]
    if info.load_time:
        lines.append(f"\tloaded_at {boot_time(sys, info.load_time)}  uid {info.created_by_uid}")
    third = f"\txlated {info.xlated_prog_len}B"
    third += f"  jited {info.jited_prog_len}B" if info.jited_prog_len else "  not jited"
    memlock = fdinfo(sys, fd).get("memlock")
    if memlock:
        third += f"  memlock {memlock}B"
    if map_ids:
        third += "  map_ids " + ",".join(map(str, map_ids))
    if info.btf_id:
        third += f"\n\tbtf_id {info.btf_id}"
    lines.extend(third.split("\n"))
    return lines


def map_show_lines(sys: Any, fd: int) -> list[str]:
    info = _info(sys, fd, BpfMapInfo())
    kind = _type_name(MapType, info.type)
    head = f"{info.id}: " + (f"{kind}  " if kind else f"type {info.type}  ")
    name = info.name.decode(errors="replace")
    if name:
        head += f"name {name}  "
    head += f"flags {info.map_flags:#x}"
    fields = fdinfo(sys, fd)
    second = f"\tkey {info.key_size}B  value {info.value_size}B  max_entries {info.max_entries}"
    if fields.get("memlock"):
        second += f"  memlock {fields['memlock']}B"
    if info.type == MapType.PROG_ARRAY and "owner_prog_type" in fields:
        owner = _type_name(ProgType, int(fields["owner_prog_type"]))
        second += f"\n\towner_prog_type {owner or fields['owner_prog_type']}  "
        second += "owner jited" if fields.get("owner_jited", "0") != "0" else "owner not jited"
    frozen = fields.get("frozen", "0") not in ("0", "")
    if info.btf_id or frozen:
        second += "\n\t"
        if info.btf_id:
            second += f"btf_id {info.btf_id}"
        if frozen:
            second += ("  " if info.btf_id else "") + "frozen"
    return [head, *second.split("\n")]


def _possible_cpus(sys: Any) -> int:
    from .maps import nr_possible_cpus

    return nr_possible_cpus(sys)


def map_entries(sys: Any, fd: int, info: BpfMapInfo) -> Iterator[tuple[bytes, bytes | None]]:
    """(key, value) pairs in GET_NEXT_KEY order; value None when the key vanished meanwhile."""
    ncpu = _possible_cpus(sys) if info.type in _PERCPU else 1
    vsize = ((info.value_size + 7) // 8 * 8) * ncpu if ncpu > 1 or info.type in _PERCPU else info.value_size
    key = None
    kbuf = ctypes.create_string_buffer(max(info.key_size, 1))
    nbuf = ctypes.create_string_buffer(max(info.key_size, 1))
    vbuf = ctypes.create_string_buffer(max(vsize, 1))
    while True:
        attr = make_attr(MapElemAttr, map_fd=fd, key=ctypes.addressof(kbuf) if key is not None else 0,
                         value=ctypes.addressof(nbuf))  # the next_key of the union
        try:
            sys.bpf(BpfCmd.MAP_GET_NEXT_KEY, attr)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        key = nbuf.raw[: info.key_size]
        ctypes.memmove(kbuf, nbuf, info.key_size)
        attr = make_attr(MapElemAttr, map_fd=fd, key=ctypes.addressof(kbuf), value=ctypes.addressof(vbuf))
        try:
            sys.bpf(BpfCmd.MAP_LOOKUP_ELEM, attr)
            yield key, vbuf.raw[:vsize]
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            yield key, None


def map_dump_lines(sys: Any, fd: int) -> list[str]:
    """bpftool map dump, plain hex layout (print_entry_plain), then "Found N elements"."""
    info = _info(sys, fd, BpfMapInfo())
    if info.type in _NO_DUMP:
        raise CliError(f"map {info.id}: {_type_name(MapType, info.type)} maps cannot be dumped (bpftool: "
                       "use map peek/pop, or read the ring)")
    lines: list[str] = []
    count = 0
    percpu = info.type in _PERCPU
    step = (info.value_size + 7) // 8 * 8
    for key, value in map_entries(sys, fd, info):
        if value is None:
            lines.append(f"key:\n{hex_bytes(key)}\nvalue:\n<no entry>")
            continue
        count += 1
        if not percpu:
            break_names = info.key_size > 16 or info.value_size > 16
            single_line = info.key_size + info.value_size <= 24 and not break_names
            text = "key:" + ("\n" if break_names else " ") + hex_bytes(key)
            text += "  " if single_line else "\n"
            text += "value:" + ("\n" if break_names else " ") + hex_bytes(value[: info.value_size])
            lines.append(text)
        else:
            text = "key:\n" + hex_bytes(key)
            for cpu in range(len(value) // step):
                text += f"\nvalue (CPU {cpu:02d}):" + ("\n" if info.value_size > 16 else " ")
                text += hex_bytes(value[cpu * step : cpu * step + info.value_size])
            lines.append(text)
    lines.append(f"Found {count} element{'' if count == 1 else 's'}")
    return "\n".join(lines).split("\n")


def prog_json(sys: Any, fd: int) -> dict[str, Any]:
    info, map_ids = prog_info(sys, fd)
    obj: dict[str, Any] = {"id": info.id, "type": _type_name(ProgType, info.type) or info.type,
                           "name": info.name.decode(errors="replace"), "tag": bytes(info.tag).hex(),
                           "gpl_compatible": bool(info.gpl_compatible & 1)}
    if info.load_time:
        obj["loaded_at"] = boot_time(sys, info.load_time)
        obj["uid"] = info.created_by_uid
    obj["bytes_xlated"] = info.xlated_prog_len
    obj["jited"] = bool(info.jited_prog_len)
    if info.jited_prog_len:
        obj["bytes_jited"] = info.jited_prog_len
    memlock = fdinfo(sys, fd).get("memlock")
    if memlock:
        obj["bytes_memlock"] = int(memlock)
    if map_ids:
        obj["map_ids"] = map_ids
    if info.btf_id:
        obj["btf_id"] = info.btf_id
    return obj


def map_json(sys: Any, fd: int) -> dict[str, Any]:
    info = _info(sys, fd, BpfMapInfo())
    obj: dict[str, Any] = {"id": info.id, "type": _type_name(MapType, info.type) or info.type,
                           "name": info.name.decode(errors="replace"), "flags": info.map_flags,
                           "bytes_key": info.key_size, "bytes_value": info.value_size,
                           "max_entries": info.max_entries}
    fields = fdinfo(sys, fd)
    if fields.get("memlock"):
        obj["bytes_memlock"] = int(fields["memlock"])
    obj["frozen"] = int(fields.get("frozen", "0") or 0)
    if info.btf_id:
        obj["btf_id"] = info.btf_id
    return obj


# -- walking every object ----------------------------------------------------------------------------
def each_object(sys: Any, kind: str, obj_id: int | None = None) -> Iterator[int]:
    """Open fds of every prog/map (or of the one with ``obj_id``), closing each after use."""
    next_cmd = BpfCmd.PROG_GET_NEXT_ID if kind == "prog" else BpfCmd.MAP_GET_NEXT_ID
    by_id = BpfCmd.PROG_GET_FD_BY_ID if kind == "prog" else BpfCmd.MAP_GET_FD_BY_ID
    ids = [obj_id] if obj_id is not None else list(_ids(sys, next_cmd))
    for i in ids:
        try:
            fd = _fd_by_id(sys, by_id, i)
        except OSError as e:
            if obj_id is not None:
                raise CliError(f"can't get {kind} by id ({i}): {os.strerror(e.errno or 0)}") from None
            continue  # gone since we listed it
        try:
            yield fd
        finally:
            sys.close(fd)


def find_map_id(sys: Any, name: str) -> int:
    matches = []
    for fd in each_object(sys, "map"):
        info = _info(sys, fd, BpfMapInfo())
        if info.name.decode(errors="replace") == name:
            matches.append(info.id)
    if not matches:
        raise CliError(f"no map named {name!r} in the {sys.kind} kernel")
    if len(matches) > 1:
        raise CliError(f"{len(matches)} maps are named {name!r} (ids {', '.join(map(str, matches))}): use id")
    return matches[0]


# -- the commands ----------------------------------------------------------------------------------------
class _Kernel:
    """The kernel the command reads, plus what --load / --run put into a simulated one."""

    def __init__(self, args: argparse.Namespace) -> None:
        from .backends import open_kernel

        self.args = args
        self.ebpf = None
        self.links: list = []
        if args.kernel == "linux":
            if args.load:
                raise CliError("--load is for the simulated kernel (on Linux, load with `bpfload run` or bpftool)")
            self.sys = open_kernel("linux")
            return
        self.sys = open_kernel("sim", arch=args.arch, cpus=args.cpus)
        if args.load:
            self._load(args.load, args.run)

    def _load(self, path: str, run: float | None) -> None:
        from .cli_run import Target, loader_error, target_from_section

        if not os.path.exists(path):
            raise CliError(f"{path}: no such file")
        from .ebpf import Ebpf

        try:
            self.ebpf = Ebpf.load_file(path, kernel=self.sys)
        except Exception as e:
            raise loader_error(e, path) from None
        for name, prog in self.ebpf.programs.items():
            try:
                prog.load()
            except Exception as e:
                raise loader_error(e, f"program {name!r}") from None
        if run is None:
            return
        for name, prog in self.ebpf.programs.items():
            target: Target | None = target_from_section(prog)
            if target is None:
                continue
            try:
                self.links.append(prog.attach(*target.args, **({"offset": target.offset} if target.offset else {})))
            except Exception as e:
                raise loader_error(e, f"program {name!r}") from None
        self.sys.start_workload(self.args.workload)
        try:
            time.sleep(run)
        finally:
            self.sys.stop_workload()

    def close(self) -> None:
        for link in self.links:
            link.detach()
        if self.ebpf is not None:
            self.ebpf.close()
        if self.sys.kind == "sim":
            self.sys.close_all()


def _obj_id(args: argparse.Namespace) -> int | None:
    spec = args.spec or []
    if not spec:
        return None
    if len(spec) != 2 or spec[0] not in ("id", "name"):
        raise CliError(f"expected 'id ID' or 'name NAME', got {' '.join(spec)!r}")
    if spec[0] == "name":
        return None
    try:
        return int(spec[1], 0)
    except ValueError:
        raise CliError(f"bad id {spec[1]!r}") from None


def _print(text: str) -> None:
    print(text, flush=True)


def _quiet_pipe(fn):
    """`bpfload map dump ... | head`: stop quietly when the reader goes away, as bpftool does."""
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except BrokenPipeError:
            from .cli_run import _closed_pipe

            return _closed_pipe()

    return run


@_quiet_pipe
def cmd_show(args: argparse.Namespace) -> int:
    kind = args.object_kind
    k = _Kernel(args)
    try:
        obj_id = _obj_id(args)
        if args.spec and args.spec[0] == "name":
            if kind != "map":
                raise CliError("programs are selected by id")
            obj_id = find_map_id(k.sys, args.spec[1])
        show = prog_show_lines if kind == "prog" else map_show_lines
        as_json = prog_json if kind == "prog" else map_json
        objs = []
        for fd in each_object(k.sys, kind, obj_id):
            if args.json:
                objs.append(as_json(k.sys, fd))
            else:
                _print("\n".join(show(k.sys, fd)))
        if args.json:
            print(json.dumps(objs if obj_id is None else objs[0]))
        return 0
    finally:
        k.close()


@_quiet_pipe
def cmd_dump(args: argparse.Namespace) -> int:
    k = _Kernel(args)
    try:
        if not args.spec:
            raise CliError("which map? give 'id ID' or 'name NAME'")
        obj_id = find_map_id(k.sys, args.spec[1]) if args.spec[0] == "name" else _obj_id(args)
        for fd in each_object(k.sys, "map", obj_id):
            _print("\n".join(map_dump_lines(k.sys, fd)))
        return 0
    finally:
        k.close()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="*", metavar="id ID | name NAME", help="the object (default: all)")
    p.add_argument("--kernel", choices=KERNEL_KINDS, default="sim", help="kernel to read (default: sim)")
    p.add_argument("--arch", choices=ARCHES, default="x86_64", help="simulated kernel's arch")
    p.add_argument("--cpus", type=int, default=2, help="simulated kernel's CPU count")
    p.add_argument("--load", metavar="OBJ", help="sim: load this object's maps and programs first")
    p.add_argument("--run", type=float, metavar="S", help="sim, with --load: attach by section and run the workload S s")
    p.add_argument("--workload", default="shell", help="sim workload for --run (default: shell)")
    p.add_argument("--json", action="store_true", help="JSON instead of bpftool's text")


@subcommand
def prog(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prog", help="loaded programs, as bpftool prog shows them")
    ps = p.add_subparsers(dest="prog_cmd", required=True)
    for name in ("show", "list"):
        s = ps.add_parser(name, help="show programs (bpftool prog show)")
        _common(s)
        s.set_defaults(func=cmd_show, object_kind="prog")


@subcommand
def map_cmd(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map", help="maps, as bpftool map shows and dumps them")
    ms = p.add_subparsers(dest="map_cmd", required=True)
    for name in ("show", "list"):
        s = ms.add_parser(name, help="show maps (bpftool map show)")
        _common(s)
        s.set_defaults(func=cmd_show, object_kind="map")
    d = ms.add_parser("dump", help="dump a map's entries (bpftool map dump)")
    _common(d)
    d.set_defaults(func=cmd_dump)
