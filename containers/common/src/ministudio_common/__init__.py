"""Code both GPU images share: where base models come from and how they load offline."""
