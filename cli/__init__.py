"""The top floor: the `visionstream` command, the demo and the local broker. Nothing imports this package."""
