"""The dispatch use case: setpoints and limits in, per-session limits out through the charge-point network."""
