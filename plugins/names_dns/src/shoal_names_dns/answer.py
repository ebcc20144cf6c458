"""DNS answers for the ``shoal.`` zone, built with dnslib (sans-IO: bytes in, bytes out).

* A name in the zone: A (overlay IPv4) and AAAA (its IPv6 twin, see
  ``shoal.addressing``); other types get an empty answer (NODATA) with the SOA.
* A name under ``shoal.`` that does not exist: NXDOMAIN with the SOA.
* Any other name: REFUSED. Nothing is ever forwarded or recursed.
* Only standard queries (opcode QUERY) with one question are answered; other
  opcodes get NOTIMP, undecodable datagrams get nothing (``None``; counted
  by the caller).

Answers are authoritative, with a short TTL because membership changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, A, DNSError, DNSRecord
from shoal.addressing import ipv6_for

from shoal_names_dns.zone import ZONE

TTL = 5


@dataclass
class Counters:
    answered: int = 0
    nxdomain: int = 0
    refused: int = 0
    malformed: int = 0


def _soa() -> RR:
    return RR(f"{ZONE}.", QTYPE.SOA, ttl=TTL,
              rdata=SOA(f"ns.{ZONE}.", f"hostmaster.{ZONE}.", (1, 60, 60, 60, TTL)))


def refuse(data: bytes) -> bytes | None:
    """REFUSED for any decodable query (a requester that may not ask), else nothing."""
    try:
        q = DNSRecord.parse(data)
    except (DNSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    if q.header.qr:
        return None
    reply = q.reply(ra=0, aa=0)
    reply.header.rcode = RCODE.REFUSED
    return bytes(reply.pack())


def answer(data: bytes, names: dict[str, str], counters: Counters | None = None
           ) -> bytes | None:
    c = counters or Counters()
    try:
        q = DNSRecord.parse(data)
    except (DNSError, ValueError, IndexError, UnicodeDecodeError):
        c.malformed += 1
        return None
    if q.header.qr:          # a response, not a query: never answer it
        c.malformed += 1
        return None
    reply = q.reply(ra=0, aa=1)
    if q.header.opcode != 0 or len(q.questions) != 1:
        reply.header.rcode = RCODE.NOTIMP
        return bytes(reply.pack())
    qname = str(q.q.qname).rstrip(".").lower()
    if qname != ZONE and not qname.endswith("." + ZONE):
        c.refused += 1
        reply.header.aa = 0
        reply.header.rcode = RCODE.REFUSED
        return bytes(reply.pack())
    ip = names.get(qname)
    if ip is None:
        c.nxdomain += 1
        if qname != ZONE:
            reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(_soa())
        return bytes(reply.pack())
    c.answered += 1
    qtype = q.q.qtype
    if qtype in (QTYPE.A, QTYPE.ANY):
        reply.add_answer(RR(q.q.qname, QTYPE.A, ttl=TTL, rdata=A(ip)))
    if qtype in (QTYPE.AAAA, QTYPE.ANY):
        reply.add_answer(RR(q.q.qname, QTYPE.AAAA, ttl=TTL, rdata=AAAA(ipv6_for(ip))))
    if not reply.rr:
        reply.add_auth(_soa())
    return bytes(reply.pack())
