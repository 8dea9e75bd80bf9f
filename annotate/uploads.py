"""Uploads: one over IMPORT_MAX_BYTES is refused before its bytes are read, not after.

Django receives a whole multipart body (into memory up to FILE_UPLOAD_MAX_MEMORY_SIZE, then a
temporary file) before a view can look at the upload's size. This handler comes first in
FILE_UPLOAD_HANDLERS, so it runs wherever a body is parsed (the CSRF check of a form, DRF's
parser): it refuses a request whose Content-Length is over the limit before reading any of it,
and stops reading a file the moment its bytes pass the limit (a missing or lying length).
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler


class UploadTooLarge(RequestDataTooBig):
    """A SuspiciousOperation: Django answers 400 wherever it escapes; the import API says
    which file and which limit."""

    def __init__(self, filename: str, size: int, limit: int, *, declared: bool):
        self.filename = filename
        self.size = size
        self.limit = limit
        # Before the parts are read, the size is the whole request's (its Content-Length).
        what = f"the upload is {size:,} bytes" if declared else "is too large"
        self.reason = f"{what}; the limit is {limit:,} bytes"
        super().__init__(f"{filename or 'upload'}: {self.reason}")


class UploadLimitHandler(FileUploadHandler):
    # The form's other fields and the multipart boundaries, on top of the file's own bytes.
    overhead = 64 * 1024

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        limit = settings.IMPORT_MAX_BYTES
        if content_length > limit + self.overhead:
            raise UploadTooLarge("", content_length, limit, declared=True)
        return None  # go on: the next handlers store the file as it arrives

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        limit = settings.IMPORT_MAX_BYTES
        if start + len(raw_data) > limit:
            raise UploadTooLarge(self.file_name or "", start + len(raw_data), limit,
                                 declared=False)
        return raw_data

    def file_complete(self, file_size: int):
        return None  # the next handler makes the file
