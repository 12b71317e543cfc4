"""QR codes as plain matrices, drawn by the views (no image library needed)."""

from __future__ import annotations

import qrcode


def qr_matrix(payload: str | bytes) -> list[list[bool]]:
    """The modules of ``payload``'s QR code, quiet zone included, True for dark."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    code.add_data(payload)
    code.make(fit=True)
    return code.get_matrix()
