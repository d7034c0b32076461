"""Schema transforms (ECS, OCSF, CEF): pure functions of a canonical event."""
