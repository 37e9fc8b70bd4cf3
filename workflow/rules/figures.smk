# Figures of the paper, from our own data (flags: `ct2mr figures --help`).
