"""`hostagent relay`: Alertmanager webhook notifications to WeCom and DingTalk group robots."""
