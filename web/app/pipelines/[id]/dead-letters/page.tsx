import Shell from "@/components/Shell";
import DeadLetters from "@/components/DeadLetters";

export default function DeadLettersPage() {
  return (
    <Shell>
      <DeadLetters />
    </Shell>
  );
}
