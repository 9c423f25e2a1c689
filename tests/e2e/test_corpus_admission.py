"""render and a real API server agree on every hostile manifest, case by case.

Each manifest of tests/corpus/hostile goes through `kubectl apply --dry-run=server`
against the local control plane with the CRD installed, and through
`bgjob-operator render`: both must accept it, or both reject it naming the same
field, and both must match the verdict written in the file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.corpus import Case, cases, render
from tests.e2e.support import Kubectl

CASES = cases()


@pytest.fixture(scope="module")
def admission(kubectl: Kubectl) -> dict[str, tuple[int, str]]:
    """The API server's verdict on every case: (exit code, stderr), in parallel."""

    def apply(case: Case) -> tuple[str, tuple[int, str]]:
        # No -n: the manifest's own namespace, else "default" (which always exists).
        done = kubectl.run(
            "apply", "--dry-run=server", "-f", str(case.path), check=False, timeout=60
        )
        return case.id, (done.returncode, done.stderr)

    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = dict(pool.map(apply, CASES))
    accepted = sum(code == 0 for code, _ in verdicts.values())
    print(f"hostile corpus: {len(CASES)} manifests, API server accepted {accepted}")
    return verdicts


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_render_and_the_api_server_agree(admission: dict[str, tuple[int, str]], case: Case) -> None:
    code, stderr = admission[case.id]
    rendered = render(case.path)
    assert (code == 0) == (rendered.code == 0), (
        f"API server {'accepted' if code == 0 else 'rejected'}: {stderr}\n"
        f"render {'accepted' if rendered.code == 0 else 'rejected'}: {rendered.stderr}"
    )
    assert (code == 0) == case.accept, stderr
    if not case.accept:
        assert case.field in stderr, stderr
        assert case.field in rendered.stderr, rendered.stderr
