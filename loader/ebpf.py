"""Ebpf and EbpfLoader: a BPF object brought into a kernel, Aya's top-level API.

Loading an object does what Aya's EbpfLoader::load does, through the Syscalls seam only:
parse the ELF (loader.obj, pure), load its BTF (BPF_BTF_LOAD) when the kernel takes it, create
every map (BPF_MAP_CREATE; pinned maps reused or pinned by name), fill global-data maps with
their initial bytes and freeze .rodata, and patch each program's lddw instructions with map
fds (BPF_PSEUDO_MAP_FD) or map value addresses (BPF_PSEUDO_MAP_VALUE + offset). Programs are
loaded into the kernel when the caller calls ``program.load()``; attaching returns links.
Everything the object opened is closed by ``close()`` / leaving the ``with`` block.

    with EbpfLoader(kernel=open_kernel("linux")).set_global("target_tgid", pid).load_file(path) as ebpf:
        prog = ebpf.program("opensnoop_tp")
        prog.load()                                   # VerifierError(message, log) if refused
        with prog.attach("syscalls", "sys_enter_openat"):
            perf = PerfEventArray(ebpf.take_map("events"))
            for buf in perf.open_all(page_count=8):   # one per online CPU
                samples, lost = buf.read_events()

BTF the kernel refuses is sanitized (loader/btf_sanitize.py) or left out; CO-RE records are
resolved against the kernel's own BTF (loader/core_reloc.py) where it publishes one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path
from typing import Any

from kernel_sim.uapi.bpf import BpfCmd, BtfLoadAttr, MapCreateAttr, MapType, make_attr
from kernel_sim.uapi.insn import BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE

from .btf_sanitize import sanitize as sanitize_btf
from .btf_values import BtfTypes
from .errors import BtfError, EbpfError, MapError
from .maps import Map, MapData, nr_possible_cpus, typed_map
from .programs import Program, kernel_version, kernel_version_code, program_class

_INSN = struct.Struct("<BBhi")
LDDW = 0x18


def _open_default_kernel():
    from .backends import open_kernel

    return open_kernel("sim")


def encode_global(value: Any, size: int) -> bytes:
    """A global's new bytes: ints little-endian at the symbol's size, bytes/ctypes as they are."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        try:
            return value.to_bytes(size, "little", signed=value < 0)
        except OverflowError:
            raise ValueError(f"{value} does not fit in {size} bytes") from None
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, ctypes._SimpleCData | ctypes.Structure | ctypes.Union | ctypes.Array):
        value = bytes(value)
    return bytes(value)


class EbpfLoader:
    """Builder for Ebpf: globals, max_entries overrides, a pin path, then load()."""

    def __init__(self, kernel=None) -> None:
        self.kernel = kernel
        self.globals: dict[str, Any] = {}
        self.max_entries: dict[str, int] = {}
        self.pin_path: str | None = None
        self.btf_enabled = True

    def set_global(self, name: str, value: Any, must_exist: bool = True) -> EbpfLoader:
        self.globals[name] = (value, must_exist)
        return self

    def set_max_entries(self, map_name: str, size: int) -> EbpfLoader:
        self.max_entries[map_name] = int(size)
        return self

    def map_pin_path(self, path: str | os.PathLike) -> EbpfLoader:
        self.pin_path = os.fspath(path)
        return self

    def btf(self, enabled: bool) -> EbpfLoader:
        """Leave the object's BTF out of the kernel (as when the kernel has no BTF support)."""
        self.btf_enabled = enabled
        return self

    def load_file(self, path: str | os.PathLike) -> Ebpf:
        data = Path(path).read_bytes()
        return self.load(data, name=os.fspath(path))

    def load(self, data: bytes, name: str = "<bytes>") -> Ebpf:
        from .obj import parse_object

        obj = parse_object(data, name)
        for gname, (value, must_exist) in self.globals.items():
            var = obj.globals.get(gname)
            if var is None:
                if must_exist:
                    raise EbpfError(f"{name}: no global {gname!r} (has: {', '.join(obj.globals) or 'none'})")
                continue
            obj.set_global(gname, encode_global(value, var.size))
        sys = self.kernel if self.kernel is not None else _open_default_kernel()
        ebpf = Ebpf(sys, obj)
        ebpf.owns_kernel = self.kernel is None  # the embedded kernel we booted goes with the object
        try:
            ebpf._bring_up(self)
        except BaseException:
            ebpf.close()
            raise
        return ebpf


class Ebpf:
    """A loaded object: ``programs`` and ``maps`` by name; a context manager that closes all."""

    def __init__(self, sys, obj) -> None:
        self.sys = sys
        self.obj = obj
        self.name = obj.name
        self.programs: dict[str, Program] = {}
        self.maps: dict[str, Map] = {}
        self.btf_fd: int | None = None
        self.btf_types: BtfTypes | None = None
        self.warnings: list[str] = []
        self._map_data: dict[str, MapData] = {}
        self._taken: set[str] = set()
        self.owns_kernel = False

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load_file(cls, path: str | os.PathLike, kernel=None) -> Ebpf:
        return EbpfLoader(kernel).load_file(path)

    @classmethod
    def load(cls, data: bytes, kernel=None, name: str = "<bytes>") -> Ebpf:
        return EbpfLoader(kernel).load(data, name)

    def _bring_up(self, loader: EbpfLoader) -> None:
        obj = self.obj
        if obj.btf is not None:
            try:
                self.btf_types = BtfTypes(obj.btf.to_bytes())
            except (BtfError, Exception) as e:  # decoding help only: never fatal
                self.warnings.append(f"BTF types not decodable: {e}")
            if loader.btf_enabled:
                self.btf_fd = self._load_btf(obj.btf.to_bytes())
        for name, mdef in obj.maps.items():
            self._map_data[name] = self._create_map(mdef, loader)
        for name, data in self._map_data.items():
            self.maps[name] = typed_map(data)
        self._fill_map_slots()
        version = kernel_version(self.sys)
        kern_version = obj.kernel_version or kernel_version_code(version)
        for pname, pdef in obj.programs.items():
            insns = self._relocate(pdef)
            cls = program_class(pdef)
            self.programs[pname] = cls(self.sys, pdef, insns, license=obj.license, kern_version=kern_version,
                                       btf_fd=self.btf_fd)
        self._plan_prog_array_slots()

    def _fill_map_slots(self) -> None:
        """Map-in-map `.values = {...}`: store the named inner maps' fds, as libbpf does."""
        for name, mdef in self.obj.maps.items():
            if mdef.map_type not in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) or not mdef.initial_slots:
                continue
            outer = self._map_data[name]
            for slot, inner_name in mdef.initial_slots.items():
                inner = self._map_data.get(inner_name)
                if inner is None:
                    raise EbpfError(f"{self.name}: map {name!r} slot {slot} names unknown map {inner_name!r}")
                outer.update(slot.to_bytes(outer.key_size, "little"), inner.fd.to_bytes(4, "little"))

    def _plan_prog_array_slots(self) -> None:
        """Prog-array `.values = {...}`: each slot is filled when its program is loaded."""
        for name, mdef in self.obj.maps.items():
            if mdef.map_type != MapType.PROG_ARRAY or not mdef.initial_slots:
                continue
            for slot, prog_name in mdef.initial_slots.items():
                prog = self.programs.get(prog_name)
                if prog is None:
                    raise EbpfError(f"{self.name}: map {name!r} slot {slot} names unknown program {prog_name!r}")

                def fill(p: Program, map_name: str = name, index: int = slot) -> None:
                    data = self._map_data.get(map_name)
                    if data is not None and not data.closed:
                        data.update(index.to_bytes(4, "little"), p.fd.to_bytes(4, "little"))

                prog.on_load.append(fill)

    def _btf_load(self, raw: bytes, with_log: bool) -> tuple[int | None, OSError | None, str]:
        blob = ctypes.create_string_buffer(raw, len(raw))
        log = ctypes.create_string_buffer(1 << 16 if with_log else 1)
        fields = dict(btf=ctypes.addressof(blob), btf_size=len(raw))
        if with_log:
            fields.update(btf_log_buf=ctypes.addressof(log), btf_log_size=len(log), btf_log_level=1)
        try:
            return self.sys.bpf(BpfCmd.BTF_LOAD, make_attr(BtfLoadAttr, **fields)), None, ""
        except OSError as e:
            return None, e, log.value.decode(errors="replace") if with_log else ""

    def _load_btf(self, raw: bytes) -> int | None:
        """BPF_BTF_LOAD as is, else sanitized (kinds older kernels lack rewritten, as Aya and libbpf
        do), else None with a warning: the object then loads without BTF, as Aya leaves it out."""
        fd, err, _ = self._btf_load(raw, with_log=False)
        if fd is not None:
            return fd
        if err is not None and err.errno in (errno.EINVAL, errno.E2BIG, errno.ENOTSUP):
            fd, _err2, _ = self._btf_load(sanitize_btf(raw), with_log=False)
            if fd is not None:
                self.warnings.append(f"BTF sanitized: the kernel refused it as built ({err.strerror})")
                return fd
        _fd, _e, text = self._btf_load(raw, with_log=True)
        if _fd is not None:
            return _fd
        lines = text.strip().splitlines()
        self.warnings.append(f"BTF not loaded ({err.strerror if err else 'refused'}){': ' + lines[-1] if lines else ''}")
        return None

    def _create_map(self, mdef, loader: EbpfLoader) -> MapData:
        max_entries = loader.max_entries.get(mdef.name, mdef.max_entries)
        if mdef.map_type == MapType.PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = nr_possible_cpus(self.sys)  # Aya and libbpf: one slot per possible CPU
        pin_file = None
        if loader.pin_path and int(mdef.pinning) == 1:
            pin_file = os.path.join(loader.pin_path, mdef.name)
            try:
                data = MapData.from_pin(self.sys, pin_file, mdef.name)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise MapError(f"map {mdef.name!r}: cannot open pinned {pin_file}: {e.strerror}", e.errno) from None
            else:
                have = (data.map_type, data.key_size, data.value_size, data.max_entries)
                want = (mdef.map_type, mdef.key_size, mdef.value_size, max_entries)
                if have != want:
                    data.close()
                    raise MapError(f"map {mdef.name!r}: pinned {pin_file} is (type, key, value, max_entries) = "
                                   f"{have}, the object defines {want}", errno.EINVAL)
                data.btf = self.btf_types
                data.btf_key_type_id, data.btf_value_type_id = mdef.btf_key_type_id, mdef.btf_value_type_id
                return data
        data = self._map_create(mdef, max_entries)
        try:
            if mdef.data is not None and mdef.map_type == MapType.ARRAY:
                data.update(b"\0\0\0\0", bytes(mdef.data).ljust(data.value_size, b"\0")[: data.value_size])
            if mdef.frozen:
                data.freeze()
            if pin_file:
                data.pin(pin_file)
        except OSError as e:
            data.close()
            raise MapError(f"map {mdef.name!r}: setting up failed: {e.strerror}", e.errno) from None
        return data

    def _map_create(self, mdef, max_entries: int) -> MapData:
        inner = None
        if mdef.inner is not None:  # map-in-map: the kernel wants a template inner map's fd
            inner = self._map_create(mdef.inner, mdef.inner.max_entries)
        try:
            return self._map_create_with(mdef, max_entries, inner.fd if inner else 0)
        finally:
            if inner is not None:
                inner.close()

    def _map_create_with(self, mdef, max_entries: int, inner_fd: int) -> MapData:
        key_id, value_id = getattr(mdef, "create_btf_ids", (mdef.btf_key_type_id, mdef.btf_value_type_id))
        use_btf = self.btf_fd is not None and (key_id or value_id)
        for with_btf in ((True, False) if use_btf else (False,)):
            fields = dict(map_type=mdef.map_type, key_size=mdef.key_size, value_size=mdef.value_size,
                          max_entries=max_entries, map_flags=mdef.map_flags, inner_map_fd=inner_fd,
                          numa_node=mdef.numa_node, map_name=mdef.kernel_name.encode())
            if with_btf:
                fields.update(btf_fd=self.btf_fd, btf_key_type_id=key_id, btf_value_type_id=value_id)
            try:
                fd = self.sys.bpf(BpfCmd.MAP_CREATE, make_attr(MapCreateAttr, **fields))
            except OSError as e:
                if with_btf and e.errno in (errno.EINVAL, errno.ENOTSUP, errno.EPERM):
                    self.warnings.append(f"map {mdef.name!r}: created without BTF ({e.strerror})")
                    continue
                raise MapError(f"{self.name}: cannot create map {mdef.name!r} ({mdef.type_name}): {e.strerror}",
                               e.errno) from None
            return MapData(self.sys, fd, mdef.name, mdef.map_type, mdef.key_size, mdef.value_size, max_entries,
                           mdef.map_flags, btf=self.btf_types,
                           btf_key_type_id=mdef.btf_key_type_id, btf_value_type_id=mdef.btf_value_type_id)
        raise AssertionError("unreachable")

    def _relocate(self, pdef) -> bytes:
        """The program's instructions with CO-RE facts for this kernel and map fds and value
        offsets patched in."""
        insns = bytearray(pdef.insns)
        if pdef.core_relocs:
            self._apply_core(pdef, insns)
        for rel in pdef.map_relocs:
            data = self._map_data.get(rel.map_name)
            if data is None:
                raise EbpfError(f"{self.name}: program {pdef.name!r} refers to unknown map {rel.map_name!r}")
            off = rel.insn_index * 8
            if off + 16 > len(insns) or insns[off] != LDDW:
                raise EbpfError(f"{self.name}: program {pdef.name!r}: relocation at insn {rel.insn_index} "
                                "is not an lddw")
            code, regs, o, _imm = _INSN.unpack_from(insns, off)
            src = BPF_PSEUDO_MAP_VALUE if rel.kind == "map_value" else BPF_PSEUDO_MAP_FD
            _INSN.pack_into(insns, off, code, (regs & 0x0F) | (src << 4), o, data.fd)
            c2, r2, o2, _i2 = _INSN.unpack_from(insns, off + 8)
            _INSN.pack_into(insns, off + 8, c2, r2, o2, rel.offset if rel.kind == "map_value" else 0)
        return bytes(insns)

    def _apply_core(self, pdef, insns: bytearray) -> None:
        from .core_reloc import CoreRelocator, kernel_target

        if self.btf_types is None:
            raise EbpfError(f"{self.name}: program {pdef.name!r} has CO-RE relocations but no usable BTF")
        target = kernel_target(self.sys)
        if target is None:
            self.warnings.append(f"program {pdef.name!r}: {len(pdef.core_relocs)} CO-RE relocation(s) left as "
                                 "compiled: the kernel publishes no BTF (/sys/kernel/btf/vmlinux)")
            return
        relocator = CoreRelocator(self.btf_types, target)
        for reloc in pdef.core_relocs:
            relocator.apply(insns, reloc, pdef.name)

    # -- access -------------------------------------------------------------------------------------------
    def program(self, name: str) -> Program:
        try:
            return self.programs[name]
        except KeyError:
            raise KeyError(f"no program {name!r} in {self.name} (has: {', '.join(self.programs) or 'none'})") from None

    def map(self, name: str) -> Map:
        try:
            return self.maps[name]
        except KeyError:
            if name in self._taken:
                raise KeyError(f"map {name!r} of {self.name} was taken") from None
            raise KeyError(f"no map {name!r} in {self.name} (has: {', '.join(self.maps) or 'none'})") from None

    def take_map(self, name: str) -> Map:
        """Remove the map from this object and hand it (and its fd) to the caller."""
        m = self.map(name)
        del self.maps[name]
        self._map_data.pop(name, None)
        self._taken.add(name)
        return m

    def close(self) -> None:
        for prog in self.programs.values():
            try:
                prog.unload()
            except OSError:
                pass
        for m in self.maps.values():
            try:
                m.close()
            except OSError:
                pass
        for data in self._map_data.values():
            if not data.closed:
                data.close()
        if self.btf_fd is not None:
            fd, self.btf_fd = self.btf_fd, None
            self.sys.close(fd)
        if self.owns_kernel and not self._taken:  # taken maps still need the kernel that holds them
            self.owns_kernel = False
            close_all = getattr(self.sys, "close_all", None)
            if close_all is not None:
                close_all()

    def __enter__(self) -> Ebpf:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Ebpf {self.name!r} programs={list(self.programs)} maps={list(self.maps)}>"


__all__ = ["Ebpf", "EbpfLoader"]
