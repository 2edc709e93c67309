"""The index templates the Elasticsearch exporter installs for its data streams (ECS
mappings), once per process; PUT is idempotent."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch

TEMPLATE_PRIORITY = 501  # above the built-in logs-*-* (100) and Fleet's (≤200); docs say >500

ECS_MAPPINGS: dict[str, Any] = {
    "dynamic_templates": [
        {
            "strings_as_keywords": {
                "match_mapping_type": "string",
                "mapping": {"type": "keyword", "ignore_above": 1024},
            }
        },
    ],
    "properties": {
        "@timestamp": {"type": "date"},
        "message": {"type": "text"},
        "tags": {"type": "keyword"},
        "service": {"properties": {"name": {"type": "keyword"}}},
        "log": {"properties": {"level": {"type": "keyword"}}},
        "event": {
            "properties": {
                "kind": {"type": "keyword"},
                "created": {"type": "date"},
                "severity": {"type": "long"},
            }
        },
        "host": {"properties": {"name": {"type": "keyword"}}},
        "error": {  # ECS error.* from parsed stack traces (issue 14)
            "properties": {
                "type": {"type": "keyword", "ignore_above": 1024},
                "message": {"type": "text"},
                "stack_trace": {"type": "text"},
                "grouping_key": {"type": "keyword"},
            }
        },
        "kubernetes": {
            "properties": {
                "labels": {"type": "flattened"},
                "annotations": {"type": "flattened"},
            }
        },
        "logguardian": {
            "properties": {
                "score": {"type": "float"},
                "anomaly": {"type": "boolean"},
                "reasons": {
                    "properties": {
                        "kind": {"type": "keyword"},
                        "score": {"type": "float"},
                        "text": {"type": "text"},
                        "severity": {"type": "keyword"},
                        "confidence": {"type": "float"},
                    }
                },
                "template": {
                    "properties": {
                        "id": {"type": "keyword"},
                        "text": {
                            "type": "text",
                            "fields": {"keyword": {"type": "keyword", "ignore_above": 2048}},
                        },
                    }
                },
                "session": {"type": "keyword"},
                "incident": {"properties": {"id": {"type": "keyword"}}},
                "explanation": {
                    "properties": {
                        "summary": {"type": "text"},
                        "likely_cause": {"type": "text"},
                        "source": {"type": "keyword"},
                        "model": {"type": "keyword"},
                        "confidence": {"type": "keyword"},
                    }
                },
            }
        },
    },
}


def template_pattern(data_stream: str) -> str:
    """`logs-logguardian.anomalies-default` → `logs-logguardian.anomalies-*`: one template
    serves every namespace of the dataset."""
    return data_stream.rsplit("-", 1)[0] + "-*"


async def install_templates(client: AsyncElasticsearch, streams: list[str]) -> None:
    """One composable template per dataset of `streams`."""
    for stream in dict.fromkeys(streams):
        await client.indices.put_index_template(
            name=f"logguardian-{template_pattern(stream)[:-2]}",
            index_patterns=[template_pattern(stream)],
            data_stream={},
            priority=TEMPLATE_PRIORITY,
            template={"mappings": ECS_MAPPINGS},
            meta={"managed_by": "logguardian", "description": "LogGuardian findings (ECS)"},
        )
