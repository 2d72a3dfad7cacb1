/* Memory-heavy: memcpy the first half of the buffer (r1, r2 = length) onto the second half
 * 8 bytes at a time, then strcmp the halves byte by byte; returns the common length. */
typedef unsigned char u8;
typedef unsigned long long u64;

u64 memwork(u8 *mem, u64 len)
{
	u64 half = len / 2;
	volatile u64 *src = (volatile u64 *)mem;
	volatile u64 *dst = (volatile u64 *)(mem + half);
	for (u64 i = 0; i < half / 8; i++)
		dst[i] = src[i];
	u8 *a = mem, *b = mem + half;
	u64 i = 0;
	while (i < half && a[i] == b[i] && a[i])
		i++;
	return i;
}
