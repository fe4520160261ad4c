"""execsight.pricing: the shipped AWS table, overrides, on-prem rates and the Pricing API refresh parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from execsight import pricing

FAMILIES = ("m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "r6i", "r7i", "t3", "g4dn", "g5", "p3", "p4d")
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1")


def test_shipped_table_covers_common_families_and_regions() -> None:
    table = pricing.load_price_table()
    for region in REGIONS:
        types = table.regions[region].instances
        for fam in FAMILIES:
            assert any(t.startswith(f"{fam}.") for t in types), (fam, region)
        for vt in ("gp3", "gp2", "io1", "io2", "st1", "sc1"):
            assert pricing.ebs_gb_month_price(vt, region, table)
        assert pricing.elastic_ip_hourly_price(region, table) == 0.005
        assert pricing.snapshot_gb_month_price(region, table)
        assert pricing.load_balancer_hourly_price(region, table)
        assert pricing.nat_gateway_hourly_price(region, table)


def test_known_prices_and_sizes_scale() -> None:
    assert pricing.hourly_price("m5.large", "us-east-1") == 0.096
    assert pricing.hourly_price("M5.XLARGE", "us-east-1a") == 0.192  # case and AZ tolerated
    assert pricing.hourly_price("c6i.4xlarge", "us-east-1") == pytest.approx(8 * 0.085)
    # Europe costs more than Virginia for the same type
    assert pricing.hourly_price("r6i.large", "eu-central-1") > pricing.hourly_price("r6i.large", "us-east-1")  # type: ignore[operator]
    assert pricing.hourly_price("m5.large", "mars-north-1") is None
    assert pricing.hourly_price("x99.huge", "us-east-1") is None
    assert pricing.ebs_monthly_cost("gp3", 100, "us-east-1") == pytest.approx(8.0)


def test_host_rate_falls_back_in_order() -> None:
    assert pricing.host_rate("m5.large", "eu-west-1", 0.1) == pricing.HostRate(0.107, "aws:eu-west-1")
    fb = pricing.host_rate("m5.large", "ap-south-1", 0.1)
    assert fb.hourly_usd == 0.096 and "fallback" in fb.source
    assert pricing.host_rate(None, "us-east-1", 0.25) == pricing.HostRate(0.25, "onprem")
    assert pricing.host_rate("custom-box", None, 0.25).source == "onprem"


def test_override_file_replaces_entries(tmp_path: Path) -> None:
    f = tmp_path / "prices.yaml"
    f.write_text("regions:\n  us-east-1:\n    instances:\n      m5.large: 0.5\n  ap-south-1:\n"
                 "    instances:\n      m5.large: 0.101\n    elastic_ip_hourly: 0.006\n")
    table = pricing.load_price_table(pricing.SHIPPED_PRICES, f)
    assert pricing.hourly_price("m5.large", "us-east-1", table) == 0.5
    assert pricing.hourly_price("m5.xlarge", "us-east-1", table) == 0.192  # untouched entries stay
    assert pricing.hourly_price("m5.large", "ap-south-1", table) == 0.101
    assert pricing.elastic_ip_hourly_price("ap-south-1", table) == 0.006


@pytest.mark.parametrize(("text", "message"), [
    ("regions: [1, 2]", "expected a mapping"),
    ("regions:\n  us-east-1:\n    instances:\n      m5.large: cheap\n", "m5.large: expected a number"),
    ("regions:\n  us-east-1:\n    instances:\n      m5.large: -1\n", "negative price"),
    ("regions: {us-east-1: [", "invalid YAML"),
])
def test_bad_price_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(pricing.PriceTableError, match=message):
        pricing.load_price_table(pricing.SHIPPED_PRICES, f)


def _product(attrs: dict[str, str], usd: str) -> str:
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "attributes": attrs},
        "terms": {"OnDemand": {"SKU.JRTCKXETXF": {"priceDimensions": {
            "SKU.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}},
    })


class PricingApi:
    """Stands in for boto3's 'pricing' client: answers GetProducts pages in the API's document shape."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def get_paginator(self, name: str) -> PricingApi:
        assert name == "get_products"
        return self

    def paginate(self, **kw: Any) -> list[dict[str, Any]]:
        self.calls.append(kw)
        f = {x["Field"]: x["Value"] for x in kw["Filters"]}
        assert kw["ServiceCode"] == "AmazonEC2" and all(x["Type"] == "TERM_MATCH" for x in kw["Filters"])
        if f.get("productFamily") == "Storage":
            return [{"PriceList": [_product({"volumeApiName": "gp3"}, "0.0800000000"),
                                   _product({"volumeApiName": "io2"}, "0.1250000000")]}]
        assert f["operatingSystem"] == "Linux" and f["tenancy"] == "Shared" and f["capacitystatus"] == "Used"
        return [{"PriceList": [_product({"instanceType": "m7i.large"}, "0.1008000000")]},
                {"PriceList": [_product({"instanceType": "c7i.large"}, "0.0892500000")]}]


def test_refresh_parses_pricing_api_documents(tmp_path: Path) -> None:
    api = PricingApi()
    fresh = pricing.refresh_price_table(["eu-west-1b"], client=api)
    assert fresh.regions["eu-west-1"].instances == {"m7i.large": 0.1008, "c7i.large": 0.08925}
    assert fresh.regions["eu-west-1"].ebs_gb_month == {"gp3": 0.08, "io2": 0.125}
    assert {c["Filters"][0]["Value"] for c in api.calls} == {"eu-west-1"}
    out = tmp_path / "fresh.yaml"
    pricing.dump_price_table(fresh, out)
    merged = pricing.load_price_table(pricing.SHIPPED_PRICES, out)
    assert pricing.hourly_price("c7i.large", "eu-west-1", merged) == 0.08925
    assert pricing.hourly_price("r5.large", "eu-west-1", merged) == 0.141  # shipped entries kept


def test_cli_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert pricing.main(["show", "t3.micro", "us-east-1"]) == 0
    assert capsys.readouterr().out.strip() == "0.0104"
    assert pricing.main(["show", "t3.micro", "nowhere-1"]) == 1
