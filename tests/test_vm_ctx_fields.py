"""What programs read from __sk_buff and xdp_md in BPF_PROG_TEST_RUN: kernel_sim against Linux.

One tiny program per readable field (r0 = *(u32 *)(ctx + off)); the same packets go to both
kernels and every field must read the same.
"""

from __future__ import annotations

import struct

import pytest
from conftest import linux_bpf_denied
from test_prog_load_run import load
from test_prog_load_run import test_run as prog_run

from kernel_sim.uapi.bpf import ProgType
from kernel_sim.vm.asm import W, exit_, ldx
from loader.backends import open_kernel

ETH_IPV4 = bytes.fromhex("000000000000" "020000000001" "0800") + bytes(range(50))
PACKETS = {
    "to-lo": ETH_IPV4,
    "otherhost": bytes.fromhex("020000000002") + ETH_IPV4[6:],
    "broadcast": bytes.fromhex("ffffffffffff") + ETH_IPV4[6:],
    "multicast": bytes.fromhex("01005e000001") + ETH_IPV4[6:],
    "ipv6": ETH_IPV4[:12] + bytes.fromhex("86dd") + ETH_IPV4[14:],
    "802.3": ETH_IPV4[:12] + bytes.fromhex("0040") + ETH_IPV4[14:],
    "raw-802.3": ETH_IPV4[:12] + bytes.fromhex("0040ffff") + ETH_IPV4[16:],
}
# __sk_buff: len, pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto, priority,
# ingress_ifindex, ifindex, tc_index, cb[0], hash, tc_classid, napi_id, wire_len, gso_segs, gso_size
SKB_FIELDS = {"len": 0, "pkt_type": 4, "mark": 8, "queue_mapping": 12, "protocol": 16, "vlan_present": 20,
              "vlan_tci": 24, "vlan_proto": 28, "priority": 32, "ingress_ifindex": 36, "ifindex": 40,
              "tc_index": 44, "cb0": 48, "hash": 68, "tc_classid": 72, "napi_id": 84, "wire_len": 160,
              "gso_segs": 164, "gso_size": 176}
SOCKET_FILTER_DENIED = {"tc_classid", "wire_len"}
XDP_FIELDS = {"ingress_ifindex": 12, "rx_queue_index": 16}  # egress_ifindex: devmap programs only


@pytest.fixture(scope="module")
def kernels():
    reason = linux_bpf_denied()
    if reason:
        pytest.skip(reason)
    sim, linux = open_kernel("sim"), open_kernel("linux")
    yield sim, linux
    sim.close_all()


def _read(sys, prog_type: int, off: int, packet: bytes, ctx: bytes | None = None) -> int:
    fd = load(sys, prog_type, [ldx(W, 0, 1, off), exit_()])
    try:
        r = prog_run(sys, fd, packet, ctx=ctx)
        assert r.err == 0
        return r.retval
    finally:
        sys.close(fd)


@pytest.mark.parametrize("prog_type", [ProgType.SOCKET_FILTER, ProgType.SCHED_CLS])
@pytest.mark.parametrize("packet", PACKETS, ids=list(PACKETS))
def test_sk_buff_fields_read_as_on_linux(kernels, prog_type, packet):
    sim, linux = kernels
    for name, off in SKB_FIELDS.items():
        if prog_type == ProgType.SOCKET_FILTER and name in SOCKET_FILTER_DENIED:
            continue
        got = _read(sim, prog_type, off, PACKETS[packet])
        assert got == _read(linux, prog_type, off, PACKETS[packet]), name


def test_sk_buff_fields_from_ctx_in(kernels):
    sim, linux = kernels
    ctx = bytearray(192)
    struct.pack_into("<I", ctx, 8, 0xAB)        # mark
    struct.pack_into("<I", ctx, 32, 6)          # priority
    struct.pack_into("<I", ctx, 36, 3)          # ingress_ifindex
    struct.pack_into("<I", ctx, 52, 0x77)       # cb[1]
    struct.pack_into("<I", ctx, 160, 1000)      # wire_len
    struct.pack_into("<I", ctx, 164, 4)         # gso_segs
    struct.pack_into("<I", ctx, 176, 1400)      # gso_size
    for off in (8, 32, 36, 52, 160, 164, 176):
        assert _read(sim, ProgType.SCHED_CLS, off, ETH_IPV4, bytes(ctx)) == \
            _read(linux, ProgType.SCHED_CLS, off, ETH_IPV4, bytes(ctx)), off


@pytest.mark.parametrize("name", XDP_FIELDS)
def test_xdp_md_fields_read_as_on_linux(kernels, name):
    sim, linux = kernels
    assert _read(sim, ProgType.XDP, XDP_FIELDS[name], ETH_IPV4) == _read(linux, ProgType.XDP, XDP_FIELDS[name],
                                                                         ETH_IPV4)


@pytest.mark.parametrize("prog_type", [ProgType.SOCKET_FILTER, ProgType.SCHED_CLS])
def test_sk_buff_ctx_out_is_linux_bytes(kernels, prog_type):
    """The whole __sk_buff that comes back (what convert_skb_to___skb copies out) is Linux's."""
    from kernel_sim.vm.asm import st

    ctx = bytearray(192)
    struct.pack_into("<IIII", ctx, 8, 0x10, 0, 0, 0)
    struct.pack_into("<I", ctx, 32, 3)
    struct.pack_into("<Q", ctx, 152, 123456789)
    struct.pack_into("<I", ctx, 176, 1400)
    struct.pack_into("<Q", ctx, 184, 42)
    prog = [st(W, 1, 48, 0x1234), st(W, 1, 64, 9), ldx(W, 0, 1, 0), exit_()]
    outs = []
    for sys in kernels:
        fd = load(sys, prog_type, prog)
        r = prog_run(sys, fd, ETH_IPV4, ctx=bytes(ctx), ctx_out=192)
        sys.close(fd)
        outs.append((r.err, r.retval, r.ctx_size_out, r.ctx))
    assert outs[0] == outs[1]
