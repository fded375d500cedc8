"""Rich output: functions from data to renderables. No service calls; the CLI passes the Console in."""
