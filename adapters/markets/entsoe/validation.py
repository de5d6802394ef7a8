"""XSD validation of ENTSO-E documents against the copies vendored in ``vpp/data/xsd/entsoe``."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from lxml import etree

from vpp.domain.errors import InvalidInput

SCHEMA_FILES: dict[str, str] = {
    "reserve_bid": "iec62325-451-7-reservebiddocument_v7_4.xsd",
    "activation": "iec62325-451-7-activationdocument_v6_4.xsd",
    "acknowledgement": "iec62325-451-1-acknowledgement_v8_1.xsd",
}


class SchemaViolation(InvalidInput):
    """An XML document does not conform to its XSD."""

    code = "schema_violation"


def xsd_directory() -> Path:
    """Folder holding the vendored ENTSO-E XSDs."""
    return Path(str(files("vpp.data").joinpath("xsd", "entsoe")))


@cache
def _schema(schema: str) -> etree.XMLSchema:
    try:
        file_name = SCHEMA_FILES[schema]
    except KeyError:
        raise InvalidInput(f"unknown schema {schema!r}; known: {sorted(SCHEMA_FILES)}") from None
    # Parsing from a path lets lxml resolve the codelist import next to it.
    return etree.XMLSchema(etree.parse(str(xsd_directory() / file_name)))


def validate(xml: bytes, schema: str) -> None:
    """Validate ``xml`` against the named schema (``reserve_bid``, ``activation``, ``acknowledgement``)."""
    xml_schema = _schema(schema)
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        document = etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise SchemaViolation(f"not well-formed XML: {exc}") from exc
    if not xml_schema.validate(document):
        errors = str(xml_schema.error_log).splitlines()
        raise SchemaViolation(
            f"document does not conform to {SCHEMA_FILES[schema]}: {errors[0]}",
            details={"schema": schema, "errors": errors[:20]},
        )
