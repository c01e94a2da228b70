"""pipeline/storage/s3.py without a server: object names under the prefix, botocore's errors turned
into the service's, the bucket made when absent, and the writer's single PUT or multipart upload,
against a real boto3 client whose calls botocore's Stubber answers (nothing is sent)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from botocore.stub import ANY, Stubber

from pipeline.errors import StorageUnavailable, StoredFileMissing
from pipeline.storage.base import MiB, audio_key, upload_key
from pipeline.storage.s3 import S3Storage, _make_client

ENDPOINT = "http://store.invalid:9000"
PART = 5 * MiB
UPLOAD = {"Bucket": "bucket", "Key": "svc/jobs/t/upload"}


@functools.cache
def _session(region: str) -> boto3.session.Session:
    # One session per region: a client made from it reuses its loaded service model (fast).
    return boto3.session.Session(aws_access_key_id="key", aws_secret_access_key="secret", region_name=region)


def _client(region: str = "us-east-1") -> Any:
    return _session(region).client("s3", endpoint_url=ENDPOINT)


@pytest.fixture
def stub() -> Iterator[Stubber]:
    with Stubber(_client()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _storage(stub: Stubber, prefix: str = "svc", *, ready: bool = True) -> S3Storage:
    storage = S3Storage("bucket", prefix, part_size=PART, client=stub.client)
    storage._bucket_ready = ready  # as after a check at start-up, so a test stubs only its own calls
    return storage


def test_a_part_under_five_mib_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 5 MiB"):
        S3Storage("bucket", part_size=5 * MiB - 1, client=_client())


def test_the_url_and_object_names_follow_the_prefix(stub: Stubber) -> None:
    prefixed = S3Storage("bucket", "/team/a/", client=stub.client)
    assert (prefixed.prefix, prefixed.url, prefixed.endpoint) == ("team/a", "s3://bucket/team/a", ENDPOINT)
    assert prefixed._name(upload_key("t")) == "team/a/jobs/t/upload"
    bare = S3Storage("bucket", client=stub.client)
    assert (bare.url, bare._name(upload_key("t"))) == ("s3://bucket", "jobs/t/upload")
    assert bare._name("jobs/", folder=True) == "jobs/"
    with pytest.raises(ValueError):
        bare._name("jobs/../t")


def test_size_reads_the_head_and_a_404_is_missing(stub: Stubber) -> None:
    storage = _storage(stub)
    stub.add_response("head_object", {"ContentLength": 1234}, {"Bucket": "bucket", "Key": "svc/jobs/t/audio.npy"})
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    assert storage.size(audio_key("t")) == 1234
    assert storage.exists(upload_key("t")) is False
    with pytest.raises(StoredFileMissing, match="uploaded file is not in storage"):
        storage.size(upload_key("t"))


@pytest.mark.parametrize(("region", "create"), [
    ("us-east-1", {"Bucket": "bucket"}),
    ("eu-west-1", {"Bucket": "bucket", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}}),
])
def test_check_creates_an_absent_bucket_in_the_clients_region(region: str, create: dict[str, Any]) -> None:
    with Stubber(_client(region)) as stub:
        storage = _storage(stub, ready=False)
        stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
        stub.add_response("create_bucket", {}, create)
        storage.check()
        assert storage._bucket_ready
        stub.assert_no_pending_responses()


def test_a_bucket_another_process_just_made_is_fine(stub: Stubber) -> None:
    storage = _storage(stub, ready=False)
    stub.add_client_error("head_bucket", service_error_code="NoSuchBucket", http_status_code=404)
    stub.add_client_error("create_bucket", service_error_code="BucketAlreadyOwnedByYou", http_status_code=409)
    storage.check()
    assert storage._bucket_ready


def test_a_bucket_that_may_not_be_created_is_unavailable_naming_it(stub: Stubber) -> None:
    storage = _storage(stub, ready=False)
    stub.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    stub.add_client_error("create_bucket", service_error_code="AccessDenied", http_status_code=403)
    with pytest.raises(StorageUnavailable) as info:
        storage.check()
    assert info.value.message == (f"The bucket 'bucket' does not exist at {ENDPOINT} and could not be created "
                                  "(AccessDenied): create it, or give credentials that may.")
    assert not storage._bucket_ready


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"])
def test_refused_credentials_are_unavailable_naming_what_to_check(stub: Stubber, code: str) -> None:
    stub.add_client_error("head_bucket", service_error_code=code, http_status_code=403)
    with pytest.raises(StorageUnavailable) as info:
        _storage(stub, ready=False).check()
    assert f"refused access to bucket 'bucket' ({code}) when asked to reach the bucket" in info.value.message
    assert "AWS_ACCESS_KEY_ID" in info.value.message and info.value.http_status == 503


def test_any_other_error_is_unavailable_with_the_stores_own_words(stub: Stubber) -> None:
    stub.add_client_error("head_object", service_error_code="SlowDown", service_message="Reduce your rate",
                          http_status_code=503)
    with pytest.raises(StorageUnavailable) as info:
        _storage(stub).size(upload_key("t"))
    assert info.value.message == (f"The object store at {ENDPOINT} failed to read an object "
                                  "(SlowDown: Reduce your rate).")


def test_a_bucket_gone_since_start_up_is_checked_again_before_the_next_write(stub: Stubber) -> None:
    storage = _storage(stub)
    stub.add_client_error("head_object", service_error_code="NoSuchBucket", http_status_code=404)
    with pytest.raises(StorageUnavailable, match="The bucket 'bucket' does not exist"):
        storage.size(upload_key("t"))
    assert not storage._bucket_ready
    stub.add_response("head_bucket", {}, {"Bucket": "bucket"})
    storage.open_writer(upload_key("t")).abort()
    assert storage._bucket_ready


@pytest.mark.parametrize(("error", "words"), [
    (NoCredentialsError(), "No credentials for the object store: set AWS_ACCESS_KEY_ID"),
    (EndpointConnectionError(endpoint_url=ENDPOINT),
     f"The object store at {ENDPOINT} does not answer (EndpointConnectionError); could not read an object."),
])
def test_no_credentials_or_no_answer_is_unavailable(error: Exception, words: str) -> None:
    client = _client()

    def fail(**kwargs: Any) -> None:
        raise error

    # Raised where botocore would sign or send the request: nothing leaves the process.
    client.meta.events.register("before-call.s3.HeadObject", fail)
    with pytest.raises(StorageUnavailable) as info:
        S3Storage("bucket", client=client).size(upload_key("t"))
    assert info.value.message.startswith(words)


def test_an_object_within_one_part_is_a_single_put(stub: Stubber) -> None:
    storage = _storage(stub)
    stub.add_response("put_object", {"ETag": '"e"'}, {"Bucket": "bucket", "Key": "svc/jobs/t/upload", "Body": b"abcde"})
    with storage.open_writer(upload_key("t")) as writer:
        writer.write(b"abc")
        writer.write(memoryview(b"de"))
    assert writer.size == 5


def test_a_larger_object_goes_part_by_part_and_is_completed(stub: Stubber) -> None:
    storage = _storage(stub)
    name = {"Bucket": "bucket", "Key": "svc/jobs/t/upload"}
    stub.add_response("create_multipart_upload", {"UploadId": "up-1"}, name)
    for number in (1, 2, 3):
        stub.add_response("upload_part", {"ETag": f'"p{number}"'},
                          {**name, "UploadId": "up-1", "PartNumber": number, "Body": ANY})
    parts = [{"PartNumber": n, "ETag": f'"p{n}"'} for n in (1, 2, 3)]
    stub.add_response("complete_multipart_upload", {},
                      {**name, "UploadId": "up-1", "MultipartUpload": {"Parts": parts}})
    writer = storage.open_writer(upload_key("t"))
    writer.write(b"a" * (PART - 1))
    writer.write(b"b" * (PART + 2))  # fills part 1 and part 2, one byte over
    writer.write(b"c")
    writer.close()
    assert writer.size == 2 * PART + 2


def test_an_aborted_multipart_upload_is_ended_and_nothing_more_is_taken(stub: Stubber) -> None:
    storage = _storage(stub)
    stub.add_response("create_multipart_upload", {"UploadId": "up-2"})
    stub.add_response("upload_part", {"ETag": '"p1"'})
    stub.add_response("abort_multipart_upload", {},
                      {"Bucket": "bucket", "Key": "svc/jobs/t/upload", "UploadId": "up-2"})
    writer = storage.open_writer(upload_key("t"))
    writer.write(b"x" * PART)
    writer.abort()
    with pytest.raises(ValueError, match="write to a closed object writer"):
        writer.write(b"late")


def test_a_completion_that_fails_aborts_the_upload(stub: Stubber) -> None:
    storage = _storage(stub)
    stub.add_response("create_multipart_upload", {"UploadId": "up-3"})
    stub.add_response("upload_part", {"ETag": '"p1"'})
    stub.add_client_error("complete_multipart_upload", service_error_code="InternalError", http_status_code=500)
    stub.add_response("abort_multipart_upload", {}, {**UPLOAD, "UploadId": "up-3"})
    writer = storage.open_writer(upload_key("t"))
    writer.write(b"x" * PART)
    with pytest.raises(StorageUnavailable, match="failed to store an object"):
        writer.close()


def test_delete_job_removes_every_page_and_ends_unfinished_uploads(stub: Stubber) -> None:
    storage = _storage(stub)
    stub.add_response("list_objects_v2", {"Contents": [{"Key": "svc/jobs/t/upload"}, {"Key": "svc/jobs/t/audio.npy"}],
                                          "IsTruncated": True, "NextContinuationToken": "next"},
                      {"Bucket": "bucket", "Prefix": "svc/jobs/t/"})
    stub.add_response("delete_objects", {}, {"Bucket": "bucket", "Delete": {
        "Objects": [{"Key": "svc/jobs/t/upload"}, {"Key": "svc/jobs/t/audio.npy"}], "Quiet": True}})
    stub.add_response("list_objects_v2", {"Contents": [{"Key": "svc/jobs/t/chunks/0.npy"}], "IsTruncated": False},
                      {"Bucket": "bucket", "Prefix": "svc/jobs/t/", "ContinuationToken": "next"})
    stub.add_response("delete_objects", {}, {"Bucket": "bucket", "Delete": {
        "Objects": [{"Key": "svc/jobs/t/chunks/0.npy"}], "Quiet": True}})
    stub.add_response("list_multipart_uploads", {"Uploads": [{"Key": "svc/jobs/t/upload", "UploadId": "up-4"}]},
                      {"Bucket": "bucket", "Prefix": "svc/jobs/t/"})
    stub.add_response("abort_multipart_upload", {}, {**UPLOAD, "UploadId": "up-4"})
    assert storage.delete_job("t") == 3


def test_objects_the_store_kept_are_unavailable_naming_how_many(stub: Stubber) -> None:
    storage = _storage(stub)
    stub.add_response("list_objects_v2", {"Contents": [{"Key": "svc/jobs/t/upload"}, {"Key": "svc/jobs/t/audio.npy"}]})
    stub.add_response("delete_objects", {"Errors": [{"Key": "svc/jobs/t/upload", "Code": "AccessDenied"}]})
    with pytest.raises(StorageUnavailable) as info:
        storage.delete_job("t")
    assert info.value.message == f"The object store at {ENDPOINT} kept 1 objects of job t (AccessDenied)."


def test_job_ids_come_from_objects_and_unfinished_uploads_under_the_prefix(stub: Stubber) -> None:
    storage = _storage(stub)
    stub.add_response("list_objects_v2", {"Contents": [
        {"Key": "svc/jobs/b/upload"}, {"Key": "svc/jobs/b/chunks/0.npy"}, {"Key": "svc/jobs/.odd/upload"},
        {"Key": "svc/jobs/a/audio.npy"}]}, {"Bucket": "bucket", "Prefix": "svc/jobs/"})
    stub.add_response("list_multipart_uploads", {"Uploads": [{"Key": "svc/jobs/c/upload", "UploadId": "u"}]},
                      {"Bucket": "bucket", "Prefix": "svc/jobs/"})
    assert list(storage.list_job_ids()) == ["a", "b", "c"]


def test_a_client_for_any_endpoint_but_awss_uses_path_style(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", ENDPOINT)
    local = _make_client()
    assert local.meta.endpoint_url == ENDPOINT and local.meta.config.s3 == {"addressing_style": "path"}
    assert (local.meta.config.connect_timeout, local.meta.config.read_timeout) == (5, 60)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    amazon = _make_client()
    assert amazon.meta.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    assert (amazon.meta.config.s3 or {}).get("addressing_style") is None
