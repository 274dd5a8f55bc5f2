"""The event contract: what every accepted input becomes. Imports nothing of ours."""
