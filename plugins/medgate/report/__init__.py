"""Run reports: the JSON document (schema: fixtures/schemas/report.schema.json) and its renderings."""

from medgate.report.document import SCHEMA_VERSION, build_report, report_status, write_json_atomic

__all__ = ["SCHEMA_VERSION", "build_report", "report_status", "write_json_atomic"]
