"""Fixtures for the engine's tests: a template catalog, an environment, workflows from YAML."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tidings.compile.loader import CompiledWorkflow, load_workflow_text
from tidings.compile.templates import TemplateCatalog
from tidings.engine.core import Environment

TEMPLATES = {
    "cart.email.html": """---
subject: "{{ contact.FIRSTNAME }}, your cart {{ event.properties.cart_id }}"
---
<p>Total {{ event.properties.total }}</p>
{% if unsubscribe_url %}<a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endif %}
""",
    "receipt.email.html": """---
subject: "Receipt {{ event.properties.order_id }}"
---
<p>Order {{ event.properties.order_id }}</p>
{% if unsubscribe_url %}<a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endif %}
""",
    "coupon.email.html": """---
subject: "A coupon"
---
<p>Use {{ event.properties.coupon.code }}</p>
""",
    "cart.sms.txt": "Cart {{ event.properties.cart_id }} waits{% if unsubscribe_url %} STOP {{ unsubscribe_url }}{% endif %}",
}


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> TemplateCatalog:
    directory: Path = tmp_path_factory.mktemp("templates")
    for name, text in TEMPLATES.items():
        (directory / name).write_text(text, encoding="utf-8")
    loaded = TemplateCatalog.load(directory)
    assert loaded.problems == []
    return loaded


@pytest.fixture
def env(catalog: TemplateCatalog) -> Environment:
    return Environment(
        templates=catalog,
        mail_from="Shop <shop@example.com>",
        sms_sender="Shop",
        unsubscribe_url=lambda contact_id, channel: (
            f"https://shop.example/u/{contact_id}/{channel}"
        ),
    )


@pytest.fixture
def make_workflow(catalog: TemplateCatalog) -> Callable[[str], CompiledWorkflow]:
    """Compile a workflow written inline (dedented); its file name follows its id."""

    def _make(text: str) -> CompiledWorkflow:
        text = textwrap.dedent(text).lstrip("\n")
        workflow_id = next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("id:")
        )
        result = load_workflow_text(text, f"{workflow_id}.yaml", catalog)
        assert result.problems == [], [str(p) for p in result.problems]
        assert result.workflow is not None
        return result.workflow

    return _make
