"""The ZooKeeper layout, records and clock shared by agent, coordinator and emulator."""
