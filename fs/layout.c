/*
 * layout.c — the fixed tree (/, /kv, /json, /lists, /.ctl and its files) as
 * one table; lookup, getattr and readdir of fixed inodes all read it.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* Every inode below INO_FIRST_KEY.  keys: what the directory lists and
 * resolves below it (a key type, NODE_POP, NODE_JDIR, or MF_T_NONE). */
static const layout_entry layout[] = {
	{INO_ROOT, INO_ROOT, "", S_IFDIR | 0755, MF_T_NONE},
	{INO_KV, INO_ROOT, "kv", S_IFDIR | 0755, MF_T_STRING},
	{INO_JSON, INO_ROOT, "json", S_IFDIR | 0755, MF_T_JSON},
	{INO_LISTS, INO_ROOT, "lists", S_IFDIR | 0755, MF_T_LIST},
	{INO_SETS, INO_ROOT, "sets", S_IFDIR | 0755, MF_T_SET},
	{INO_CTL, INO_ROOT, ".ctl", S_IFDIR | 0755, MF_T_NONE},
	/* Control files: content changes constantly (no attr caching). */
	{INO_STATS, INO_CTL, "stats", S_IFREG | 0444, MF_T_NONE},
	{INO_SNAPSHOT, INO_CTL, "snapshot", S_IFREG | 0644, MF_T_NONE},
	{INO_POPDIR, INO_CTL, "pop", S_IFDIR | 0755, NODE_POP},
	{INO_JPATHDIR, INO_CTL, "json", S_IFDIR | 0755, NODE_JDIR},
	{INO_INCRDIR, INO_CTL, "incr", S_IFDIR | 0755, NODE_INCR},
	{INO_SREMDIR, INO_CTL, "srem", S_IFDIR | 0755, NODE_SREM},
	{INO_BPOPDIR, INO_CTL, "bpop", S_IFDIR | 0755, NODE_BPOP},
	{INO_JINCRDIR, INO_CTL, "jincr", S_IFDIR | 0755, NODE_JIDIR},
	{INO_EXPIREDIR, INO_CTL, "expire", S_IFDIR | 0755, NODE_EXPIRE},
};
#define NLAYOUT (sizeof layout / sizeof layout[0])

const layout_entry *layout_find(fuse_ino_t ino)
{
	for (size_t i = 0; i < NLAYOUT; i++)
		if (layout[i].ino == ino)
			return &layout[i];
	return NULL;
}

const layout_entry *layout_child(fuse_ino_t parent, const char *name)
{
	for (size_t i = 1; i < NLAYOUT; i++)
		if (layout[i].parent == parent && strcmp(layout[i].name, name) == 0)
			return &layout[i];
	return NULL;
}

size_t layout_children(fuse_ino_t parent, const layout_entry **out, size_t max)
{
	size_t n = 0;
	for (size_t i = 1; i < NLAYOUT && n < max; i++)
		if (layout[i].parent == parent)
			out[n++] = &layout[i];
	return n;
}

uint8_t dir_type(fuse_ino_t dir)
{
	const layout_entry *f = layout_find(dir);
	return f ? f->keys : MF_T_NONE;
}

void layout_attr(mf_fs *fs, const layout_entry *f, struct stat *st)
{
	if (S_ISDIR(f->mode)) {
		dir_attr(fs, f->ino, st);
		if (f->ino == INO_KV)
			kv_root_attr(fs, st);
	} else {
		/* A control file's size is that of its text now (ls -l, tar and
		 * cp read that many bytes); it changes, hence no attr caching. */
		char *text = ctl_text(fs, f->ino);
		int64_t now = mf_now_ns();
		file_attr(fs, f->ino, f->mode & 07777, text ? strlen(text) : 0, now, now, st);
		free(text);
	}
}

double layout_attr_timeout(mf_fs *fs, const layout_entry *f)
{
	return S_ISDIR(f->mode) ? fs->timeout : 0;
}
