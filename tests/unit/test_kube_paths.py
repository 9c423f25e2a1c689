"""A name from a BackgroundJob never becomes more than one segment of a REST path."""

from __future__ import annotations

import pytest

from bgjob.kube import path


def test_a_secret_path_names_one_secret_in_one_namespace() -> None:
    assert path("Secret", "shop", "redis-creds") == "/api/v1/namespaces/shop/secrets/redis-creds"


@pytest.mark.parametrize(
    "name",
    ["..", ".", "../../victim/secrets/redis-creds", "../../../secrets", "a/b", "%2e%2e", "a?b"],
)
def test_a_name_that_would_walk_out_of_its_namespace_is_refused(name: str) -> None:
    # The operator reads Secrets with cluster-wide permission: a path that escapes
    # the BackgroundJob's namespace would read someone else's.
    with pytest.raises(ValueError, match="not a valid object name"):
        path("Secret", "shop", name)


def test_a_namespace_that_is_not_one_segment_is_refused() -> None:
    with pytest.raises(ValueError):
        path("Secret", "shop/../victim", "redis-creds")
