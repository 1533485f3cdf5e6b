"""The built-in offline demo dataset: a rendered catalogue and users with latent tastes.

    from recsys.demo import generate_demo
    summary = generate_demo(Path("demo-data"))          # ~2,000 items, 300 users, deterministic in the seed

Tests use :func:`tiny_demo` (60 items, 12 users) as a fixture.
"""

from __future__ import annotations

from pathlib import Path

from recsys.demo.generate import EVENT_TYPES, DemoSummary, generate_demo

__all__ = ["EVENT_TYPES", "DemoSummary", "generate_demo", "tiny_demo"]

TINY_ITEMS, TINY_USERS = 60, 12


def tiny_demo(tmp_path: Path, *, seed: int = 0) -> Path:
    """Generate the tiny demo (60 items, 12 users) under ``tmp_path / "demo"`` and return that directory.

    For pytest fixtures::

        @pytest.fixture
        def demo_dir(tmp_path: Path) -> Path:
            return tiny_demo(tmp_path)
    """
    out = Path(tmp_path) / "demo"
    generate_demo(out, n_items=TINY_ITEMS, n_users=TINY_USERS, seed=seed)
    return out
