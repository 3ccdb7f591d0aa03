"""SQS/EventBridge Lambda entry points: each parses its event, calls one logic function, reports failures."""
