"""UFTP XML (no namespace) to and from the message dataclasses, validated against the vendored 3.1.0 XSDs."""

from __future__ import annotations

import dataclasses
import types
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from lxml import etree

from adapters.markets.uftp.errors import UftpSchemaError
from adapters.markets.uftp.messages import MESSAGE_TYPES, PayloadMessage

_MESSAGES_BY_TAG = {message_type.xml_tag: message_type for message_type in MESSAGE_TYPES}
T = TypeVar("T")


def xsd_directory() -> Path:
    """Folder holding the vendored UFTP 3.1.0 XSDs."""
    return Path(str(files("vpp.data").joinpath("xsd", "uftp-3.1.0")))


@cache
def _schema() -> etree.XMLSchema:
    # UFTP-agr.xsd includes the common, AGR-DSO and AGR-CRO definitions: every message an AGR sends or gets.
    return etree.XMLSchema(etree.parse(str(xsd_directory() / "UFTP-agr.xsd")))


def _parse(xml: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        return etree.fromstring(xml, parser)
    except etree.XMLSyntaxError as exc:
        raise UftpSchemaError(f"not well-formed XML: {exc}") from exc


def validate_uftp_xml(xml: bytes) -> etree._Element:
    """Validate a UFTP message or SignedMessage against UFTP-agr.xsd and return its root element."""
    root = _parse(xml)
    schema = _schema()
    if not schema.validate(root):
        errors = str(schema.error_log).splitlines()
        raise UftpSchemaError(f"{root.tag} does not conform to UFTP 3.1.0: {errors[0]}", errors=errors[:20])
    return root


def to_xml(message: PayloadMessage) -> bytes:
    """Serialise a message to UTF-8 XML and check it against the XSD."""
    if not message.xml_tag:
        raise TypeError(f"{type(message).__name__} is abstract")
    root = etree.Element(message.xml_tag)
    _write(root, message)
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    validate_uftp_xml(xml)
    return xml


def from_xml(xml: bytes) -> PayloadMessage:
    """Validate and parse a UFTP payload message into its dataclass."""
    root = validate_uftp_xml(xml)
    return element_to_message(root)


def element_to_message(root: etree._Element) -> PayloadMessage:
    """Map an already validated root element to its message dataclass."""
    message_type = _MESSAGES_BY_TAG.get(str(root.tag))
    if message_type is None:
        raise UftpSchemaError(f"unsupported UFTP message type {root.tag}")
    return _read(root, message_type)


def _write(element: etree._Element, value: Any) -> None:
    for item in dataclasses.fields(value):
        content = getattr(value, item.name)
        if "children" in item.metadata:
            for child in content:
                _write(etree.SubElement(element, item.metadata["children"]), child)
        elif content is not None:
            element.set(item.metadata["attr"], _format(content, item.metadata.get("decimals")))


def _format(value: Any, decimals: int | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("UFTP timestamps must be timezone-aware")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal) and decimals is not None:
        return str(value.quantize(Decimal(1).scaleb(-decimals)))
    return str(value)


def _read(element: etree._Element, target: type[T]) -> T:
    hints = get_type_hints(target)
    values: dict[str, Any] = {}
    for item in dataclasses.fields(target):  # type: ignore[arg-type]
        if "children" in item.metadata:
            (child_type, _) = get_args(hints[item.name])
            values[item.name] = tuple(
                _read(child, child_type) for child in element.iterchildren(item.metadata["children"])
            )
            continue
        text = element.get(item.metadata["attr"])
        if text is not None:
            values[item.name] = _convert(text, hints[item.name])
    try:
        return target(**values)
    except TypeError as exc:
        raise UftpSchemaError(f"{element.tag}: {exc}") from exc


def _convert(text: str, annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    try:
        if annotation is bool:
            return text.strip() in ("true", "1")
        if annotation is int:
            return int(text)
        if annotation is Decimal:
            return Decimal(text)
        if annotation is datetime:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        if annotation is date:
            return date.fromisoformat(text)
        if isinstance(annotation, type) and issubclass(annotation, Enum):
            return annotation(text)
    except (ValueError, InvalidOperation) as exc:
        raise UftpSchemaError(f"cannot read {text!r} as {annotation}") from exc
    return text
