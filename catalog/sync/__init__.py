"""The live API: sign, fetch and check pages, and hand each region's listing to the store."""
