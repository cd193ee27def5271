"""CSV property templates: which are kept per distinct input, and that each row still gets its
own text either way."""

from __future__ import annotations

import pytest

from tidings.compile.sandbox import make_environment
from tidings.service.csv_mapping import PropertySpec
from tidings.service.csv_values import RowValues, columns_read

COLUMNS = frozenset({"brand", "category_code", "price", "items"})


@pytest.mark.parametrize(
    ("source", "reads"),
    [
        ("{{ row.brand | title }}", ("brand",)),
        ("{{ row['brand'] ~ row.category_code ~ row.brand }}", ("brand", "category_code")),
        ("{{ row.items }}", ("items",)),  # a column named like a dict method is the column
        ("{{ 'x' if row.price else row.brand.split('.')[-1] }}", ("brand", "price")),
        ("fixed", ()),
        ("{{ row | length }}", None),  # the row itself
        ("{% for k in row %}{{ k }}{% endfor %}", None),
        ("{{ row.get('brand') }}", None),  # a dict method
        ("{{ row.colour }}", None),  # not a column: fails, every row
        ("{{ row[row.brand] }}", None),  # a computed column
        ("{{ row[1] }}", None),
        ("{% set row = {'brand': 'x'} %}{{ row.brand }}", None),
        ("{{ [row.brand, 'b'] | random }}", None),  # not a function of its input
    ],
)
def test_a_template_is_kept_per_input_only_when_the_columns_it_reads_decide_its_text(
    source: str, reads: tuple[str, ...] | None
) -> None:
    assert columns_read(make_environment().parse(source), COLUMNS) == reads


def cells(brand: str, category: str = "", price: str = "1", items: str = "") -> dict[str, str]:
    return {"brand": brand, "category_code": category, "price": price, "items": items}


NAME = "{{ (row.brand ~ ' ' ~ (row.category_code.split('.')[-1] if row.category_code else 'item')) | trim | title }}"


def test_each_row_gets_the_text_of_its_own_values_when_texts_are_kept() -> None:
    values = RowValues(COLUMNS)
    rows = [cells("apple", "electronics.smartphone"), cells("acme"), cells("apple", "x.tv")]
    texts = [values.render(NAME, row, "name") for row in [*rows, *rows]]
    assert texts == ["Apple Smartphone", "Acme Item", "Apple Tv"] * 2


def test_a_template_over_the_whole_row_renders_every_row() -> None:
    values = RowValues(COLUMNS)
    source = "{{ row.values() | join('|') }}"
    assert values.render(source, cells("a"), "all") == "a||1|"
    assert values.render(source, cells("a", price="2"), "all") == "a||2|"


def test_a_template_that_fails_fails_on_every_row_with_its_reason() -> None:
    values = RowValues(COLUMNS)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"^name: "):
            values.render("{{ row.brand.nope.deeper }}", cells("a"), "name")


def test_values_type_and_omit_as_the_mapping_says() -> None:
    specs = {
        "name": PropertySpec(template="{{ row.brand | upper }}"),
        "price": PropertySpec(column="price", type="decimal"),
        "category": PropertySpec(column="category_code"),
        "currency": PropertySpec(value="USD"),
    }
    values = RowValues(COLUMNS)
    assert values.values(specs, cells("acme", price="2.50")) == {
        "name": "ACME",
        "price": 2.5,
        "currency": "USD",
    }
