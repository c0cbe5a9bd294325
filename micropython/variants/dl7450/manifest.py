# Frozen modules of the DL-7450 host firmware: asyncio only (micropython-lib
# is not part of the Debian source archive).
include("$(MPY_DIR)/extmod/asyncio")
