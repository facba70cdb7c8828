"""``GET /metrics``: Prometheus text for scrapers, outside authentication like the probes."""

from __future__ import annotations

from litestar import Response, get

from server.metrics import CONTENT_TYPE, MetricsExporter


@get("/metrics", include_in_schema=False)
async def metrics(exporter: MetricsExporter) -> Response[bytes]:
    return Response(
        exporter.scrape(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"}
    )
