/*
 * The commit engine (include/hubfs/commit.h).
 *
 * DESIGN
 *
 * One pass, in the order the Hub needs: hash every file to add (sha256
 * only), then preupload (which says LFS or inline, and what the branch
 * holds at each path now), then the git blob id of the files that go
 * inline, then the LFS uploads, then the commit.  The blob id is only
 * needed for inline files, which are small: an LFS file is read once.
 * Nothing is visible on the branch before the commit call succeeds, so a
 * failure anywhere leaves the branch as it was, and everything here can
 * be run again.
 *
 * A file whose content the branch already holds at its path is left out
 * (huggingface_hub does the same, to avoid empty commits).  A file the
 * Hub marks shouldIgnore (the repository's .gitignore) fails the whole
 * commit with -EINVAL: huggingface_hub drops it silently, but a file
 * system must not make a file vanish.  0-byte files are always inline:
 * LFS storage refuses empty objects.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "hubfs/commit.h"
#include "hubfs/err.h"
#include "hubfs/mem.h"

#define HASH_CHUNK (1u << 20)
#define SAMPLE_LEN 512
#define ATTRS_MAX (1u << 20)	/* a .gitattributes we send to preupload */

static void hex(char *out, const unsigned char *md, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	out[2 * n] = '\0';
}

int hubfs_commit_hash(hubfs_hub_source read, void *arg, uint64_t size,
		      char sha256[65], char oid[41], uint8_t *sample)
{
	EVP_MD_CTX *s256 = sha256 ? EVP_MD_CTX_new() : NULL;
	EVP_MD_CTX *s1 = oid ? EVP_MD_CTX_new() : NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	char header[64];
	uint64_t off = 0;
	char *buf = hubfs_malloc(HASH_CHUNK);
	int err = -ENOMEM;

	if ((sha256 && !s256) || (oid && !s1) || !buf)
		goto out_free;
	err = -EIO;
	if ((s256 && !EVP_DigestInit_ex(s256, EVP_sha256(), NULL)) ||
	    (s1 && !EVP_DigestInit_ex(s1, EVP_sha1(), NULL)))
		goto out_free;
	/* The git blob id hashes "blob SIZE\0" and then the content. */
	snprintf(header, sizeof(header), "blob %llu", (unsigned long long)size);
	if (s1)
		EVP_DigestUpdate(s1, header, strlen(header) + 1);
	while (off < size) {
		size_t len = size - off < HASH_CHUNK ? (size_t)(size - off)
						      : HASH_CHUNK;

		err = read(arg, off, buf, len);
		if (err)
			goto out_free;
		if (sample && off < SAMPLE_LEN)
			memcpy(sample + off, buf,
			       len < SAMPLE_LEN - off ? len
						       : SAMPLE_LEN - off);
		if (s256)
			EVP_DigestUpdate(s256, buf, len);
		if (s1)
			EVP_DigestUpdate(s1, buf, len);
		off += len;
	}
	err = -EIO;
	if (s256) {
		if (!EVP_DigestFinal_ex(s256, md, &mdlen))
			goto out_free;
		hex(sha256, md, mdlen);
	}
	if (s1) {
		if (!EVP_DigestFinal_ex(s1, md, &mdlen))
			goto out_free;
		hex(oid, md, mdlen);
	}
	err = 0;
out_free:
	hubfs_free(buf);
	EVP_MD_CTX_free(s256);
	EVP_MD_CTX_free(s1);
	return err;
}

static int hash_file(struct hubfs_commit_file *f, char sha256[65],
		     char oid[41], uint8_t *sample)
{
	size_t len = f->size < SAMPLE_LEN ? (size_t)f->size : SAMPLE_LEN;
	int err;

	/* A sha256 computed as the file was written: only the sample
	 * (its first bytes, for preupload) is read. */
	if (sha256 && f->hashed && !oid)
		err = len ? f->read(f->arg, 0, sample, len) : 0;
	else
		err = hubfs_commit_hash(f->read, f->arg, f->size, sha256, oid,
					sample);
	if (err && !hubfs_err_get())
		hubfs_err_set("cannot read %s to commit it", f->path);
	return err;
}

/* The text of the .gitattributes the commit adds, if it adds one. */
static int new_gitattributes(const struct hubfs_commit_req *req, char **out)
{
	size_t i;

	*out = NULL;
	for (i = 0; i < req->n; i++) {
		const struct hubfs_commit_file *f = &req->files[i];
		char *text;
		int err;

		if (f->deleted || strcmp(f->path, ".gitattributes") != 0 ||
		    f->known_lfs)
			continue;
		if (f->size > ATTRS_MAX) {
			hubfs_err_set(".gitattributes is larger than %u bytes",
				      ATTRS_MAX);
			return -EFBIG;
		}
		text = hubfs_malloc(f->size + 1);
		if (!text)
			return -ENOMEM;
		err = f->size ? f->read(f->arg, 0, text, f->size) : 0;
		if (err) {
			hubfs_free(text);
			return err;
		}
		text[f->size] = '\0';
		*out = text;
	}
	return 0;
}

int hubfs_commit_make(struct hubfs_hub *hub, struct hubfs_commit_req *req,
		      char out[41], bool *made)
{
	struct hubfs_hub_upload_file *up = NULL;
	struct hubfs_hub_lfs_object *objs = NULL, *later = NULL;
	struct hubfs_hub_commit_op *ops = NULL;
	uint8_t (*samples)[SAMPLE_LEN] = NULL;
	size_t *up_file = NULL;
	size_t i, nup = 0, nobj = 0, nlater = 0, nops = 0;
	char *attrs = NULL;
	int err = -ENOMEM;

	req->sent = false;
	up = hubfs_calloc(req->n + 1, sizeof(*up));
	up_file = hubfs_calloc(req->n + 1, sizeof(*up_file));
	samples = hubfs_calloc(req->n + 1, sizeof(*samples));
	objs = hubfs_calloc(req->n + 1, sizeof(*objs));
	later = hubfs_calloc(req->n + 1, sizeof(*later));
	ops = hubfs_calloc(req->n + 1, sizeof(*ops));
	if (!up || !up_file || !samples || !objs || !later || !ops)
		goto out_free;

	/* Hash what is to be added. */
	for (i = 0; i < req->n; i++) {
		struct hubfs_commit_file *f = &req->files[i];

		f->skipped = false;
		f->lfs = f->known_lfs;
		if (f->deleted || f->known_lfs)
			continue;
		f->oid[0] = '\0';
		err = hash_file(f, f->sha256, NULL, samples[nup]);
		if (err)
			goto out_free;
		up[nup].path = f->path;
		up[nup].size = f->size;
		up[nup].sample = samples[nup];
		up_file[nup++] = i;
	}
	if (nup) {
		err = new_gitattributes(req, &attrs);
		if (err)
			goto out_free;
		err = hubfs_hub_preupload(hub, req->branch, attrs, up, nup);
		if (err)
			goto out_free;
	}
	for (i = 0; i < nup; i++) {
		struct hubfs_commit_file *f = &req->files[up_file[i]];

		f->lfs = up[i].lfs && f->size > 0;
		if (up[i].ignore) {
			hubfs_err_set("the Hub ignores %s (a .gitignore rule of "
				      "the repository); rename or remove it",
				      f->path);
			err = -EINVAL;
			goto out_free;
		}
		if (!f->lfs) {
			err = hash_file(f, NULL, f->oid, NULL);
			if (err)
				goto out_free;
		}
		if (strcmp(up[i].remote_oid, f->lfs ? f->sha256 : f->oid) == 0) {
			f->skipped = true;
			continue;
		}
		if (f->lfs) {
			struct hubfs_hub_lfs_object *o =
				f->uploading ? &later[nlater++] : &objs[nobj++];

			memcpy(o->sha256, f->sha256, sizeof(o->sha256));
			o->size = f->size;
			o->read = f->read;
			o->arg = f->arg;
		}
	}
	if (nobj) {
		err = hubfs_hub_lfs_upload(hub, req->branch, objs, nobj,
					   req->parallel ? req->parallel : 4);
		if (err)
			goto out_free;
	}
	/* Sent meanwhile by their own uploads, most likely: the batch call
	 * says, and what is still missing (an upload failed or was
	 * stopped) goes up now. */
	if (nlater) {
		if (req->wait_uploads)
			req->wait_uploads(req->wait_arg);
		err = hubfs_hub_lfs_upload(hub, req->branch, later, nlater,
					   req->parallel ? req->parallel : 4);
		if (err)
			goto out_free;
	}

	/* Deletions first: a path may be deleted as a file and added back
	 * as a directory's child in one commit. */
	for (i = 0; i < req->n; i++) {
		if (!req->files[i].deleted)
			continue;
		ops[nops].kind = HUBFS_OP_DELETE_FILE;
		ops[nops++].path = req->files[i].path;
	}
	for (i = 0; i < req->n; i++) {
		struct hubfs_commit_file *f = &req->files[i];
		struct hubfs_hub_commit_op *op = &ops[nops];

		if (f->deleted || f->skipped)
			continue;
		op->path = f->path;
		op->size = f->size;
		if (f->lfs) {
			op->kind = HUBFS_OP_ADD_LFS;
			op->sha256 = f->sha256;
		} else {
			op->kind = HUBFS_OP_ADD_FILE;
			op->read = f->read;
			op->arg = f->arg;
		}
		nops++;
	}
	if (nops == 0) {
		snprintf(out, 41, "%s", req->parent);
		*made = false;
		err = 0;
		goto out_free;
	}
	struct hubfs_hub_commit c = {
		.branch = req->branch, .parent = req->parent,
		.summary = req->summary, .description = req->description,
		.ops = ops, .n = nops,
	};
	req->sent = true;
	err = hubfs_hub_commit(hub, &c, out);
	if (!err)
		*made = true;
out_free:
	hubfs_free(attrs);
	hubfs_free(up);
	hubfs_free(up_file);
	hubfs_free(samples);
	hubfs_free(objs);
	hubfs_free(later);
	hubfs_free(ops);
	return err;
}
