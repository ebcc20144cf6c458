"""Offloads for the data plane: fewer, larger operations, same packets on the wire.

* ``virtio``: the virtio-net header of a TUN opened with IFF_VNET_HDR.
* ``segment``: TSO/USO super-packets from the TUN cut into tunnel-sized packets.
* ``coalesce``: decrypted packets merged into super-packets for the TUN (GRO).
* ``udp_gso``: UDP_SEGMENT batches and UDP_GRO reads of sealed datagrams.
* ``checksum``: the Internet checksum these need.

All of it is sans-I/O; the TUN device (``shoal.tun``) and the UDP transport
probe what the kernel supports and fall back to one packet per syscall.
"""
