"""Any X -> a checked, labelled, split source of uint8 images; decoding; preprocessing."""
