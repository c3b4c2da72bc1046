"""Tests for host_tools.bench.wire_compare (competitor wire encodings)."""
from __future__ import annotations

import json
import logging
import socket
import warnings
from datetime import datetime, timezone

import cbor2
import pytest
from lxml import etree

from host_tools.bench import wire_compare as wc

NS = {
    "ei": "http://docs.oasis-open.org/ns/energyinterop/201110",
    "oadr": "http://openadr.org/oadr-2.0b/2012/07",
    "xcal": "urn:ietf:params:xml:ns:icalendar-2.0",
    "strm": "urn:ietf:params:xml:ns:icalendar-2.0:stream",
    "scale": "http://docs.oasis-open.org/ns/emix/2011/06/siscale",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("wire_compare must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # Fresh build per test, so the network guard and log capture see it.
    wc.competitor_bytes.cache_clear()


def _xml(name: str) -> etree._Element:
    return etree.fromstring(wc.competitor_bytes(name, "openadr"))


def _values(root: etree._Element, path: str) -> list[str]:
    return [e.text for e in root.iterfind(path, NS)]


def test_epochs_match_datetime() -> None:
    utc = timezone.utc
    assert wc.PRICE24["start"] == 1795651200
    assert wc.PRICE24["start"] == datetime(2026, 11, 26, tzinfo=utc).timestamp()
    assert wc.SHED["start"] == datetime(2026, 11, 26, 17, tzinfo=utc).timestamp()
    assert wc.TELEMETRY["ts"] == datetime(2026, 11, 26, 12, tzinfo=utc).timestamp()
    assert len(wc.PRICE24["prices"]) == 24


def test_openadr_is_schema_valid_unsigned_and_parses_back() -> None:
    from openleadr.messaging import parse_message, validate_xml_schema

    expected = {"price24": "oadrDistributeEvent", "shed": "oadrDistributeEvent",
                "telemetry": "oadrUpdateReport"}
    for name, message_type in expected.items():
        data = wc.competitor_bytes(name, "openadr")
        assert data.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
        validate_xml_schema(data)
        assert _xml(name).find(".//ds:Signature", NS) is None
        assert parse_message(data)[0] == message_type


def test_openadr_price24_content() -> None:
    root = _xml("price24")
    signal = root.find(".//ei:eiEventSignal", NS)
    assert signal.findtext("ei:signalName", namespaces=NS) == "ELECTRICITY_PRICE"
    assert signal.findtext("ei:signalType", namespaces=NS) == "price"
    intervals = signal.findall("strm:intervals/ei:interval", NS)
    assert len(intervals) == 24
    assert _values(signal, ".//xcal:duration/xcal:duration") == ["PT1H"] * 24
    prices = [float(v) for v in _values(signal, ".//ei:signalPayload//ei:value")]
    assert prices == wc.PRICE24["prices"]
    assert "152.75" in _values(signal, ".//ei:value")
    assert _values(root, ".//oadr:currencyPerKWh/oadr:itemUnits") == ["EUR"]
    assert _values(root, ".//oadr:currencyPerKWh/scale:siScaleCode") == ["m"]
    assert _values(root, ".//xcal:dtstart/xcal:date-time") == ["2026-11-26T00:00:00.000000Z"]
    assert _values(root, ".//ei:eiActivePeriod//xcal:duration/xcal:duration") == ["P1D"]
    assert _values(root, ".//ei:testEvent") == ["false"]


def test_openadr_shed_content() -> None:
    root = _xml("shed")
    assert _values(root, ".//ei:signalName") == ["LOAD_CONTROL"]
    assert _values(root, ".//ei:signalType") == ["x-loadControlCapacity"]
    assert _values(root, ".//ei:signalPayload//ei:value") == ["0.8"]
    assert _values(root, ".//strm:intervals/ei:interval//xcal:duration/xcal:duration") == ["PT2H"]
    assert _values(root, ".//xcal:dtstart/xcal:date-time") == ["2026-11-26T17:00:00.000000Z"]
    assert _values(root, ".//ei:eiTarget/ei:venID") == ["plug-0001"]


def test_openadr_telemetry_content() -> None:
    root = _xml("telemetry")
    payloads = {p.findtext("ei:rID", namespaces=NS): p.findtext(".//ei:value", namespaces=NS)
                for p in root.iterfind(".//oadr:oadrReportPayload", NS)}
    assert payloads == {"power": "1234.5", "energy": "98765.4", "relay": "1"}
    stamps = set(_values(root, ".//xcal:dtstart/xcal:date-time"))
    assert stamps == {"2026-11-26T12:00:00.000000Z"}


def test_openadr_is_deterministic_and_quiet(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="openleadr"), warnings.catch_warnings():
        warnings.simplefilter("error")
        first = {n: wc.competitor_bytes(n, "openadr") for n in wc.CONTENTS}
        wc.competitor_bytes.cache_clear()
        second = {n: wc.competitor_bytes(n, "openadr") for n in wc.CONTENTS}
    assert first == second
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("name", sorted(wc.CONTENTS))
def test_json_and_cbor_round_trip(name: str) -> None:
    content = wc.CONTENTS[name]
    raw_json = wc.competitor_bytes(name, "json")
    assert json.loads(raw_json.decode("utf-8")) == content
    assert b" " not in raw_json  # compact separators
    assert cbor2.loads(wc.competitor_bytes(name, "cbor")) == content


def test_sizes_are_positive_and_plausible() -> None:
    sizes = wc.competitor_sizes()
    print()
    print(f"{'content':<10}{'openadr':>9}{'json':>7}{'cbor':>7}")
    for name, row in sizes.items():
        print(f"{name:<10}{row['openadr']:>9}{row['json']:>7}{row['cbor']:>7}")
    assert set(sizes) == {"price24", "shed", "telemetry"}
    for name, row in sizes.items():
        assert set(row) == {"openadr", "json", "cbor"}
        assert all(n > 0 for n in row.values())
        assert row == {enc: len(wc.competitor_bytes(name, enc)) for enc in row}
        assert row["openadr"] > 5 * row["json"]
    # Envelope alone is ~1.5 kB; each price interval adds ~250 B of XML.
    assert 4000 < sizes["price24"]["openadr"] < 15000
    assert 1000 < sizes["shed"]["openadr"] < 4000
    assert 1000 < sizes["telemetry"]["openadr"] < 4000


def test_unknown_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        wc.competitor_bytes("nope", "json")
    with pytest.raises(ValueError):
        wc.competitor_bytes("shed", "protobuf")


def test_price96_is_the_spec_vector_and_under_250_bytes() -> None:
    # Issue 12's figure wire_bytes_price96: a day of quarter-hour prices, secured.
    from spot import cbor, frame
    from test_vectors import spec_vectors

    raw = wc.spot_price96()
    assert raw == {n: r for n, _o, r in spec_vectors()}["info-price-forecast-96"]
    assert len(raw) < 250, len(raw)
    s = cbor.decode(frame.decode(raw).payload)[1]
    assert s.interval() == 900 and len(s.values) == 96 and s.scale == 0
    # whole EUR/MWh, within half a euro of each quarter's interpolated price
    cents = [round(p * 100) for p in wc.PRICE24["prices"]]
    for i, v in enumerate(s.values):
        h, k = divmod(i, 4)
        exact = (cents[h] * (4 - k) + cents[min(h + 1, 23)] * k) / 400
        assert abs(v - exact) <= 0.5, (i, v, exact)
