"""HTTP/1.1 pieces that pypilot's two small clients share: the Consul agent's (``pypilot.consul_http``) and
``-ping``'s (``pypilot.control.client``). No imports: ``-ping`` runs every few seconds in an image's
HEALTHCHECK and loads nothing it does not need."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["Headers"]


class Headers(dict[str, str]):
    """Response headers, looked up without regard to case (as requests' were: py-consul reads
    ``X-Consul-Index``, Consul may write ``X-Consul-Index`` or a proxy ``x-consul-index``)."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        self.names: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            if key in self.names:  # a repeated header: its values joined, as HTTP says they combine
                value = f"{dict.__getitem__(self, self.names[key])}, {value}"
            else:
                self.names[key] = name
            dict.__setitem__(self, self.names[key], value)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, self.names[name.lower()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.names

    def get(self, name: str, default: Any = None) -> Any:
        key = self.names.get(name.lower())
        return default if key is None else dict.__getitem__(self, key)
