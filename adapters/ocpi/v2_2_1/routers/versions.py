"""Inbound versions module: our version list and our 2.2.1 endpoints (token A accepted)."""

from __future__ import annotations

from fastapi import Request, Response

from adapters.ocpi.v2_2_1.routers.common import VersionsCaller, context_of, envelope, ocpi_router
from adapters.ocpi.v2_2_1.schemas import Endpoint, InterfaceRole, ModuleID, Version, VersionDetails
from adapters.ocpi.v2_2_1.transport import OCPI_VERSION

router = ocpi_router("", "versions")

# Our interfaces: receivers for what CPOs own, the sender side of ChargingProfiles (results, active profiles).
OUR_MODULES = (
    (ModuleID.CREDENTIALS, InterfaceRole.SENDER),
    (ModuleID.SESSIONS, InterfaceRole.RECEIVER),
    (ModuleID.CHARGING_PROFILES, InterfaceRole.SENDER),
    (ModuleID.CDRS, InterfaceRole.RECEIVER),
    (ModuleID.LOCATIONS, InterfaceRole.RECEIVER),
)


@router.get("/versions", operation_id="ocpi_get_versions")
def get_versions(request: Request, caller: VersionsCaller) -> Response:
    """The OCPI versions we speak."""
    context = context_of(request)
    data = [Version(version=OCPI_VERSION, url=context.details_url)]
    return envelope(data)


@router.get(f"/{OCPI_VERSION}", operation_id="ocpi_get_version_details")
def get_version_details(request: Request, caller: VersionsCaller) -> Response:
    """Our 2.2.1 endpoints."""
    context = context_of(request)
    slash = "/" if caller.auth.flags.trailing_slash_urls else ""
    details = VersionDetails(
        version=OCPI_VERSION,
        endpoints=[Endpoint(identifier=m, role=r, url=context.module_url(m) + slash) for m, r in OUR_MODULES],
    )
    return envelope(details, wrap_list=caller.auth.flags.list_wrapped_data)
